"""Benchmarks: latency and throughput of the models and the reading pipeline, tracked over time."""
