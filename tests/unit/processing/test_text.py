"""tritonkit.processing.text: tokenizing with a model's own tokenizer.json, and mean pooling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tritonkit.processing import text
from tritonkit.processing.step_api import StepConfigError, StepInputError

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world", "the", "cat"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT-style tokenizer.json (word level, [CLS] ... [SEP], pad 0) written here."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    directory = tmp_path_factory.mktemp("tokenizer")
    tok.save(str(directory / "tokenizer.json"))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16}))
    return directory


def test_tokenize_pads_to_the_longest_row_and_masks(tokenizer_dir: Path) -> None:
    encoded = text.tokenize(["hello world", "cat", ""], directory=tokenizer_dir, max_length=16)
    assert encoded.input_ids.tolist() == [[2, 4, 5, 3], [2, 7, 3, 0], [2, 3, 0, 0]]
    assert encoded.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]]
    assert encoded.input_ids.dtype == np.int64 and encoded.token_type_ids.shape == (3, 4)


def test_tokenize_truncates_long_texts_to_max_length(tokenizer_dir: Path) -> None:
    encoded = text.tokenize(["the cat " * 500], directory=tokenizer_dir, max_length=6)
    assert encoded.input_ids.tolist() == [[2, 6, 7, 6, 7, 3]]


def test_model_max_length_prefers_sentence_transformers_config(tokenizer_dir: Path,
                                                               tmp_path: Path) -> None:
    assert text.model_max_length(tokenizer_dir) == 16
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 128}))
    assert text.model_max_length(tmp_path) == 128
    assert text.model_max_length(tmp_path / "missing") == text.DEFAULT_MAX_LENGTH


def test_missing_tokenizer_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(text.TokenizerLoadError, match="not found"):
        text.tokenize(["x"], directory=tmp_path, max_length=8)


def test_decode_texts_reports_invalid_utf8_as_row_errors() -> None:
    texts, errors = text.decode_texts([b"caf\xc3\xa9", b"\xff\xfe", "plain", 3])
    assert texts == ["café", "", "plain", ""]
    assert sorted(errors) == [1, 3] and "UTF-8" in errors[1]


def test_mean_pool_ignores_masked_tokens_and_normalizes() -> None:
    hidden = np.array([[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    np.testing.assert_allclose(text.mean_pool(hidden, mask, normalize=False), [[2.0, 0.0]])
    np.testing.assert_allclose(text.mean_pool(hidden, mask), [[1.0, 0.0]])
    np.testing.assert_allclose(text.mean_pool(hidden, np.zeros((1, 3))), [[0.0, 0.0]])
    with pytest.raises(StepInputError, match="disagree"):
        text.mean_pool(hidden, np.ones((1, 2)))


def test_cosine_similarity_rows() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[2.0, 0.0], [2.0, 0.0]])
    np.testing.assert_allclose(text.cosine_similarity(a, b), [1.0, 0.0])


def test_load_tokenizer_checks_everything_it_needs(tokenizer_dir: Path, tmp_path: Path) -> None:
    assert issubclass(text.TokenizerLoadError, StepConfigError)
    assert text.load_tokenizer(tokenizer_dir, 6) is text.load_tokenizer(tokenizer_dir, 6)
    with pytest.raises(text.TokenizerLoadError, match=f"directory {tmp_path / 'absent'} "):
        text.load_tokenizer(tmp_path / "absent", 6)
    with pytest.raises(text.TokenizerLoadError, match="max_length must be >= 2"):
        text.load_tokenizer(tokenizer_dir, 1)
    with pytest.raises(text.TokenizerLoadError,
                       match=r"max_length 17 exceeds .* 16 \(sentence_bert_config.json"):
        text.load_tokenizer(tokenizer_dir, 17)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(text.TokenizerLoadError, match=f"cannot load {broken / 'tokenizer.json'}"):
        text.load_tokenizer(broken, 8)


def test_relative_directories_are_not_resolved_against_the_checkout(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # a relative path means the working directory, nothing else
    assert not hasattr(text, "PROJECT_ROOT")
    with pytest.raises(text.TokenizerLoadError, match="not found"):
        text.tokenize(["x"], directory="artifacts/text_encoder/tokenizer", max_length=8)
