"""Benchmarks that live outside the libraries (``make bench-gpu``)."""
