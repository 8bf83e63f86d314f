"""The C family's host side: its options, preprocessing, formatting and output filters."""
