"""Deployment helpers and the one-machine scale-out proof.

- `shm_size`: the shared-memory size a Triton container needs for a built repository;
- `server_flags`: the serving container's tritonserver flags (docker/triton-server.flags);
- `nginx_gateway`: an nginx load balancer (HTTP upstream and gRPC `grpc_pass`) run in the
  foreground from a generated config;
- `harness`: three local Triton replicas behind nginx plus client-side failover, one of them
  killed under steady load (`python -m harness.scaleout run`).
"""

from harness.scaleout.errors import ScaleoutError
from harness.scaleout.shm_size import ModelShm, ShmEstimate, estimate_shm_size

__all__ = ["ModelShm", "ScaleoutError", "ShmEstimate", "estimate_shm_size"]
