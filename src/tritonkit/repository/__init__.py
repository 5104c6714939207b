"""Read, write and lint any Triton model repository (`config.pbtxt` through `model_config_pb2`)."""

from tritonkit.repository.config_io import CONFIG_NAME, parse_config, read_config, write_config
from tritonkit.repository.lint import (
    LintProblem,
    ModelKind,
    format_problems,
    lint_repository,
    model_kind,
)

__all__ = ["CONFIG_NAME", "LintProblem", "ModelKind", "format_problems", "lint_repository",
           "model_kind", "parse_config", "read_config", "write_config"]
