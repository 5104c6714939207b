"""Precision variants (fp16, int8 with its quantization recipe) and the accuracy gates they pass."""
