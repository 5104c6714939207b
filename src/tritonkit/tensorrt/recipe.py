"""The recipe of a TensorRT plan: what the container will build, readable without building it.

`plan_recipe.json` sits in the model directory of every plan model (committed with the
repository, where the plan itself is not): the ONNX that TensorRT parses, every profile, the
builder's options, the server flags the plan needs, and two commands that reproduce the plan
(the builder's own, and an equivalent trtexec line). Paths are relative to the spec's folder;
no path of the machine that wrote it appears.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tritonkit.build.manifest import relative_to
from tritonkit.spec import ONNXRUNTIME_REPOSITORY, ModelSpec, Precision
from tritonkit.tensorrt.plan import PlanOptions, server_flags, trtexec_command

RECIPE_NAME = "plan_recipe.json"
# Where the recipe puts the transformed (fp16/int8) or exported (PyTorch source) ONNX that
# TensorRT parses: the served ONNX of an onnxruntime-target build run from the spec's folder.
TRANSFORMED_ONNX_REPOSITORY = ONNXRUNTIME_REPOSITORY


@dataclass(frozen=True, kw_only=True)
class PlanRecipe:
    model: str
    precision: str
    # the fp32 ONNX of the spec, relative to the spec's folder, or `pytorch:<factory>` for a
    # PyTorch source
    source_onnx: str
    # the ONNX TensorRT parses (the source, or its export and/or precision transform)
    parsed_onnx: str
    prepare: str  # the command that writes parsed_onnx ("" when it is the source)
    options: dict[str, Any]
    server_flags: tuple[str, ...]
    builder_command: str
    trtexec_command: str

    def to_json(self) -> str:
        data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def plan_recipe(model: ModelSpec, options: PlanOptions, *, spec_path: Path,
                repository: Path) -> PlanRecipe:
    """The recipe of `model`'s plan in `repository`, commands run from the spec's folder.

    A transformed (fp16/int8) or PyTorch-sourced model's plan parses the ONNX that an
    onnxruntime-target build writes (`prepare`): never a path of the machine's build cache.
    """
    base = spec_path.parent
    spec_name = relative_to(spec_path, base)
    repo = relative_to(repository, base) if repository.is_absolute() else repository.as_posix()
    source = (model.pytorch.description if model.pytorch is not None
              else relative_to(model.onnx, base))
    prepare = ""
    parsed = source
    if model.precision is not Precision.FP32 or model.pytorch is not None:
        parsed = (TRANSFORMED_ONNX_REPOSITORY / model.name / str(model.serving.version)
                  / "model.onnx").as_posix()
        prepare = shlex.join(["tritonkit", "build", "--spec", spec_name,
                              "--target", "onnxruntime", "--out",
                              TRANSFORMED_ONNX_REPOSITORY.as_posix()])
    plan = f"{repo}/{model.name}/{model.serving.version}/model.plan"
    portable = replace(options, timing_cache=None)
    return PlanRecipe(
        model=model.name,
        precision=model.precision.value,
        source_onnx=source,
        parsed_onnx=parsed,
        prepare=prepare,
        options=portable.as_dict(),
        server_flags=server_flags(options),
        builder_command=shlex.join(["tritonkit", "build", "--spec",
                                    spec_name, "--target", "tensorrt", "--out", repo]),
        trtexec_command=trtexec_command(Path(parsed), Path(plan), portable),
    )


def write_recipe(recipe: PlanRecipe, model_dir: Path) -> Path:
    path = model_dir / RECIPE_NAME
    path.write_text(recipe.to_json(), encoding="utf-8")
    return path
