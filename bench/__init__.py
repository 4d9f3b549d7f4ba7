"""Benchmarks for SPEC section 8: `python -m bench`."""
