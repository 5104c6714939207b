"""Benchmark harness: perf_analyzer, hey, the peer systems and the reports."""
