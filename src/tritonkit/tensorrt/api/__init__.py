"""The real TensorRT API surface per release (enums, classes, trtexec flags) as project data.

`surface_for_tensorrt("10.8.0.43")` returns what NVIDIA's sources of that release bind;
`check_trtexec_command` checks a trtexec command line against it.
"""

from tritonkit.tensorrt.api.surface import (
    TensorRTSurface,
    TrtexecFlag,
    held_surfaces,
    load_surface,
    surface_for_tensorrt,
)
from tritonkit.tensorrt.api.trtexec_check import check_trtexec_command

__all__ = [
    "TensorRTSurface",
    "TrtexecFlag",
    "check_trtexec_command",
    "held_surfaces",
    "load_surface",
    "surface_for_tensorrt",
]
