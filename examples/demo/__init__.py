"""The main job end to end: build the example repository, serve it, classify, compare."""
