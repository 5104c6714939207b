"""Text embeddings around a BERT-family encoder: tokenize in, mean pooling + L2 norm out.

`tokenize` uses the model's own `tokenizer.json` (Hugging Face `tokenizers`, the Rust fast
tokenizer that `transformers` wraps), batch-encodes every row in one call, truncates to the
model's maximum length and pads to the longest row of the batch. `mean_pool` averages the
encoder's last hidden state over the attention mask and L2-normalises, as sentence-transformers'
Pooling(mean) + Normalize modules do.

Defined edge cases: an empty string encodes as [CLS] [SEP] and gets a normal embedding (the
same as sentence-transformers); a text longer than the maximum length is truncated to it; a
row that is not valid UTF-8 is a row error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from tritonkit.processing.step_api import StepConfigError, StepInputError

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
SENTENCE_CONFIG_FILE = "sentence_bert_config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
DEFAULT_MAX_LENGTH = 512
_MAX_LENGTH_SOURCES = ((SENTENCE_CONFIG_FILE, "max_seq_length"),
                       (TOKENIZER_CONFIG_FILE, "model_max_length"))


class TokenizerLoadError(StepConfigError):
    """The tokenizer directory or its files are missing or unusable (a configuration error,
    not the caller's: the model fails to load)."""


@dataclass(frozen=True, kw_only=True)
class Encoded:
    """A tokenized batch, padded to its longest row: int64 [B, L] each."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


def declared_max_length(directory: Path) -> tuple[int, str] | None:
    """The model's maximum length and the file declaring it: sentence-transformers'
    max_seq_length, else the tokenizer's model_max_length; None when neither declares one."""
    for name, key in _MAX_LENGTH_SOURCES:
        path = directory / name
        if path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8")).get(key)
            except (OSError, ValueError, AttributeError) as e:
                raise TokenizerLoadError(f"cannot read {path}: {e}") from e
            if isinstance(value, int) and 0 < value <= 1_000_000:
                return value, f"{name} {key}"
    return None


def model_max_length(directory: Path) -> int:
    """sentence-transformers' max_seq_length, else the tokenizer's model_max_length, else 512."""
    declared = declared_max_length(directory)
    return declared[0] if declared is not None else DEFAULT_MAX_LENGTH


@lru_cache(maxsize=8)
def load_tokenizer(directory: Path, max_length: int) -> object:
    """The fast tokenizer of `directory`, truncating at `max_length`, padding to the longest.

    Checks what serving needs, so that a model using it fails to load rather than its requests:
    the directory and its tokenizer.json exist and load, 2 <= max_length <= the maximum the
    model declares, and the tokenizer encodes a text. `directory` is used as given (a relative
    path is relative to the working directory, as anywhere in Python).
    """
    from tokenizers import Tokenizer  # noqa: PLC0415 -- only text steps need it

    if not directory.is_dir():
        raise TokenizerLoadError(f"tokenizer directory {directory} not found (export the model "
                                 "with `python -m examples.model_zoo text-encoder`)")
    path = directory / TOKENIZER_FILE
    if not path.is_file():
        raise TokenizerLoadError(f"tokenizer file {path} not found (export the model with "
                                 "`python -m examples.model_zoo text-encoder`)")
    if max_length < 2:
        raise TokenizerLoadError(f"max_length must be >= 2, got {max_length}")
    declared = declared_max_length(directory)
    if declared is not None and max_length > declared[0]:
        raise TokenizerLoadError(f"max_length {max_length} exceeds the model's maximum "
                                 f"{declared[0]} ({declared[1]} in {directory})")
    try:
        tokenizer = Tokenizer.from_file(str(path))
        padding = tokenizer.padding or {}
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.enable_padding(pad_id=int(padding.get("pad_id", 0)),
                                 pad_type_id=int(padding.get("pad_type_id", 0)),
                                 pad_token=str(padding.get("pad_token", "[PAD]")))
        tokenizer.encode_batch(["", "a text"])
    except Exception as e:  # the Rust tokenizer raises its own Exception type
        raise TokenizerLoadError(f"cannot load {path}: {e}") from e
    log.info("loaded tokenizer %s (max_length %d)", path, max_length)
    return tokenizer


def decode_texts(rows: Sequence[object]) -> tuple[list[str], dict[int, str]]:
    """BYTES rows -> str (UTF-8); rows that are not text become '' and a row error."""
    texts: list[str] = []
    errors: dict[int, str] = {}
    for row, value in enumerate(rows):
        if isinstance(value, str):
            texts.append(value)
            continue
        if isinstance(value, bytes | bytearray | memoryview):
            try:
                texts.append(bytes(value).decode("utf-8"))
                continue
            except UnicodeDecodeError as e:
                errors[row] = f"text is not valid UTF-8: {e.reason} at byte {e.start}"
        else:
            errors[row] = f"expected text as bytes, got {type(value).__name__}"
        texts.append("")
    return texts, errors


def tokenize(texts: Sequence[str], *, directory: str | Path, max_length: int) -> Encoded:
    """Batch-encode `texts` with the model's tokenizer, truncated and padded to the longest."""
    return encode(load_tokenizer(Path(directory), max_length), texts)


def encode(tokenizer: object, texts: Sequence[str]) -> Encoded:
    """Batch-encode `texts` with a tokenizer from `load_tokenizer`."""
    encodings = tokenizer.encode_batch(list(texts))  # type: ignore[attr-defined]
    if not encodings:
        empty = np.zeros((0, 2), dtype=np.int64)
        return Encoded(input_ids=empty, attention_mask=empty.copy(), token_type_ids=empty.copy())
    return Encoded(
        input_ids=np.array([e.ids for e in encodings], dtype=np.int64),
        attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),
        token_type_ids=np.array([e.type_ids for e in encodings], dtype=np.int64),
    )


def mean_pool(hidden: np.ndarray, mask: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """Masked mean over tokens of hidden [B, L, H] -> float32 [B, H], L2-normalised.

    Rows whose mask is all zero pool to zeros (and stay zero after normalisation).
    """
    hidden = np.asarray(hidden, dtype=np.float32)
    mask = np.asarray(mask)
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise StepInputError(f"hidden states [batch, tokens, dim] and mask [batch, tokens] "
                             f"disagree: {list(hidden.shape)} vs {list(mask.shape)}")
    weights = mask.astype(np.float32)[:, :, None]
    summed = np.einsum("bld,bl->bd", hidden, weights[:, :, 0])
    counts = np.clip(weights.sum(axis=1), 1e-9, None)
    pooled = summed / counts
    if normalize:
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        pooled = pooled / np.clip(norms, 1e-12, None)
    return pooled.astype(np.float32)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of [N, D] arrays (float64)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.where(denom > 0, denom, 1.0)
