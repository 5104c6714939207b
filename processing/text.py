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

from processing.step_api import StepInputError

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
SENTENCE_CONFIG_FILE = "sentence_bert_config.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MAX_LENGTH = 512


class TokenizerLoadError(RuntimeError):
    """The tokenizer directory or its files are missing or unusable (a configuration error,
    not the caller's: the adapter answers INTERNAL)."""


@dataclass(frozen=True, kw_only=True)
class Encoded:
    """A tokenized batch, padded to its longest row: int64 [B, L] each."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


def resolve_directory(directory: str | Path) -> Path:
    """An absolute path as is; a relative one against the project root (where models.yaml is)."""
    path = Path(directory)
    return path if path.is_absolute() else PROJECT_ROOT / path


def model_max_length(directory: Path) -> int:
    """sentence-transformers' max_seq_length, else the tokenizer's model_max_length, else 512."""
    for name, key in ((SENTENCE_CONFIG_FILE, "max_seq_length"),
                      (TOKENIZER_CONFIG_FILE, "model_max_length")):
        path = directory / name
        if path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8")).get(key)
            except (OSError, ValueError) as e:
                raise TokenizerLoadError(f"cannot read {path}: {e}") from e
            if isinstance(value, int) and 0 < value <= 1_000_000:
                return value
    return DEFAULT_MAX_LENGTH


@lru_cache(maxsize=8)
def load_tokenizer(directory: str, max_length: int) -> object:
    """The fast tokenizer of `directory`, truncating at `max_length`, padding to the longest."""
    from tokenizers import Tokenizer  # noqa: PLC0415 -- only text steps need it

    path = resolve_directory(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise TokenizerLoadError(f"tokenizer file {path} not found (export the model with "
                                 "`python -m model_zoo text-encoder`)")
    if max_length < 2:
        raise TokenizerLoadError(f"max_length must be >= 2, got {max_length}")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust tokenizer raises its own Exception type
        raise TokenizerLoadError(f"cannot load {path}: {e}") from e
    padding = tokenizer.padding or {}
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=int(padding.get("pad_id", 0)),
                             pad_type_id=int(padding.get("pad_type_id", 0)),
                             pad_token=str(padding.get("pad_token", "[PAD]")))
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
    tokenizer = load_tokenizer(str(directory), max_length)
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
