"""TensorRT plans: optimization profiles, the plan build, its recipe and provenance, which server
a plan loads on, and the TensorRT API surfaces of each release (`api/`)."""
