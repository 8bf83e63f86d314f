"""Test harness: the local stack of real processes, a private libvirt daemon."""
