"""Resolve the build target: `auto` is `tensorrt` where TensorRT and a GPU exist, else `local`."""

from __future__ import annotations

import logging

from tritonkit.errors import EngineBuildError
from tritonkit.spec import Target
from tritonkit.tensorrt.plan import probe_tensorrt

log = logging.getLogger(__name__)


def resolve_target(target: Target) -> Target:
    if target is not Target.AUTO:
        return target
    try:
        env = probe_tensorrt()
    except EngineBuildError as e:
        log.info("target auto -> local (%s)", str(e).splitlines()[0])
        return Target.LOCAL
    log.info("target auto -> tensorrt (TensorRT %s on %s)", env.tensorrt_version, env.gpu_name)
    return Target.TENSORRT
