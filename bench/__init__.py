"""Benchmarks of boothsync, run as ``python -m bench.<name>`` from the repository root.

See bench/README.md for what each figure means. Nothing here is imported by boothsync.
"""
