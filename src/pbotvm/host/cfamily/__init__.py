"""The C family's host side."""
