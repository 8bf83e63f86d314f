"""The C family's host side: custom options, preprocessing into a whole program, astyle."""
