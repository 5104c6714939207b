"""A spec's PyTorch source: its factory's module file (found without importing it), and the
model itself (the factory imported with the spec's folder first on sys.path, weights loaded).

torch is imported only inside `load_pytorch_model`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from tritonkit.errors import ExportError
from tritonkit.spec import PyTorchSource

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def factory_module_file(factory: str, base_dir: Path) -> Path | None:
    """The source file of the factory's module, where importing it would find it (the spec's
    folder first, then sys.path), found without importing anything; None when not a plain
    .py file on those paths."""
    parts = factory.partition(":")[0].split(".")
    roots = [base_dir, *(Path(entry) if entry else Path.cwd() for entry in sys.path)]
    for root in roots:
        stem = root.joinpath(*parts)
        for candidate in (stem.with_name(stem.name + ".py"), stem / "__init__.py"):
            if candidate.is_file():
                return candidate.resolve()
    return None


@contextlib.contextmanager
def spec_dir_first(base_dir: Path) -> Iterator[None]:
    """sys.path with the spec's folder first, for as long as the factory is imported."""
    entry = str(base_dir)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def load_pytorch_model(source: PyTorchSource, *, base_dir: Path,
                       model_name: str) -> torch.nn.Module:
    """Call the factory, load the weights (a state_dict, `weights_only=True`), set eval mode.

    Raises ExportError naming the model and what failed: the import, the factory, the weights.
    """
    import torch  # noqa: PLC0415

    where = f"model {model_name!r} (pytorch:{source.factory})"
    module_name, _, attr = source.factory.partition(":")
    with spec_dir_first(base_dir):
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # the user's module may raise anything while importing
            raise ExportError(f"{where}: cannot import {module_name!r}: "
                              f"{type(e).__name__}: {e}") from e
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ExportError(f"{where}: {module_name!r} has no function {attr!r}")
    try:
        model = factory()
    except Exception as e:  # the user's factory
        raise ExportError(f"{where}: the factory raised {type(e).__name__}: {e}") from e
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"{where}: the factory returned {type(model).__name__}, not a "
                          "torch.nn.Module")
    if source.weights is not None:
        _load_weights(model, source.weights, where)
    return model.eval()


def _load_weights(model: torch.nn.Module, weights: Path, where: str) -> None:
    import torch  # noqa: PLC0415

    if not weights.is_file():
        raise ExportError(f"{where}: weights file {weights} not found")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # torch's unpickler raises several types
        raise ExportError(f"{where}: {weights.name} is not a loadable state_dict "
                          f"(torch.load weights_only=True): {type(e).__name__}: {e}") from e
    if not isinstance(state, Mapping):
        raise ExportError(f"{where}: {weights.name} holds a {type(state).__name__}, not a "
                          "state_dict: save it with torch.save(model.state_dict(), path)")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ExportError(f"{where}: {weights.name} does not fit the factory's model: "
                          f"{e}") from e
    log.debug("%s: loaded %d tensors from %s", where, len(state), weights.name)
