"""Reliability and security harness: bad-input corpus over HTTP and gRPC, faults, overload,
soak, safe defaults; `python -m harness.reliability run [--quick]` writes
results/reliability/latest/summary.json and report.md."""
