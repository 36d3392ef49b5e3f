"""Benchmarks (see stream.py). A package so `bench.countwrites` can be a Django app in
bench-only settings."""
