"""A real local `tritonserver` (the nvidia-pytriton wheel's, or one on PATH): find, start, wait,
stop without orphans. `LocalTriton` and `serve_forever` in `local_triton` are the entry points."""
