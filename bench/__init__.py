"""Benchmarks that print numbers (run from the checkout: python -m bench.NAME)."""
