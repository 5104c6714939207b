"""Plain, importable pre/post-processing functions, vectorized over a batch. No Triton import."""
