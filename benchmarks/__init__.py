"""Benchmark harness: perf_analyzer, wrk, the peer systems and the reports."""
