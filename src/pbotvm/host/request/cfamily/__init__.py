"""The C family's host side: its behaviour (``language``), preprocessing, formatting and
output filters; what it shares with Java (its options among them) is in ``statements``."""
