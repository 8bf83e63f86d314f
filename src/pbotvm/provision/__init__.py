"""Turning a VM into a pbotvm guest: ``setup-guest``, run inside a VM the operator brought."""
