"""Spec to repository: model checks, config writing, ensembles, the builder and its checks.

`build_repository(spec, target=..., out=...)` writes a complete model repository;
`ReferencePipeline` runs a built pipeline in-process, the reference served results must equal.
"""

from tritonkit.build.builder import (
    BuildResult,
    BuiltModel,
    build_repository,
    export_model,
    export_pytorch_sources,
)
from tritonkit.build.reference_runner import ReferencePipeline, ReferenceRunError
from tritonkit.build.repository_check import check_repository
from tritonkit.build.targets import resolve_target

__all__ = ["BuildResult", "BuiltModel", "ReferencePipeline", "ReferenceRunError",
           "build_repository", "check_repository", "export_model", "export_pytorch_sources",
           "resolve_target"]
