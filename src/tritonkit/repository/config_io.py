"""Read and write `config.pbtxt` through the protobuf (`ModelConfig`), never through text templates.

- `read_config` / `parse_config` go through `text_format.Parse`; syntax errors become a
  `ConfigError` that names the file, the line and the column.
- `config_to_text` prints with `text_format`, and always writes `max_batch_size` explicitly,
  also when it is 0 (proto3 leaves default values out, and a reader of the file should not have
  to know that a missing field means "no batching").
- `write_config` replaces the file atomically.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tritonkit.errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_NAME = "config.pbtxt"
_FILE_MODE = 0o644

ModelConfig = model_config_pb2.ModelConfig

_MAX_BATCH_SIZE_FIELD = ModelConfig.DESCRIPTOR.fields_by_name["max_batch_size"]


def parse_config(text: str, source: str | Path | None = None) -> model_config_pb2.ModelConfig:
    """Parse config text into a `ModelConfig`.

    On a syntax error raise `ConfigError("<source>:<line>:<col>: <message>")`; without a source
    the message starts at the line number (`"<line>:<col>: <message>"`).
    """
    config = ModelConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        line, column = e.GetLine(), e.GetColumn()
        detail = str(e)
        if line is not None:
            # ParseError's own text starts with "<line>:<col> : "; keep only the message.
            detail = detail.removeprefix(f"{line}:{column} : ")
            where = f"{line}:{column}"
        else:
            where = "?:?"
        prefix = f"{source}:" if source is not None else ""
        raise ConfigError(f"{prefix}{where}: {detail}") from e
    return config


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    """Read and parse a config.pbtxt; every failure is a `ConfigError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read model config ({e})") from e
    return parse_config(text, path)


def config_to_text(config: model_config_pb2.ModelConfig) -> str:
    """Print a config deterministically (fields in field-number order, map entries sorted).

    `max_batch_size` is always present, also when it is 0. The result re-parses to a message
    equal to `config`.
    """
    if config.max_batch_size != 0:
        return text_format.MessageToString(config)
    return _print_with_explicit_zero_batch(config)


def _print_with_explicit_zero_batch(config: model_config_pb2.ModelConfig) -> str:
    """Print `config` with the proto3-default `max_batch_size` of 0 written out.

    `text_format` prints the set fields in field-number order and skips fields holding their
    default value. So the config is split into the fields numbered before `max_batch_size` and
    those numbered after it; each part is printed by `text_format`, and the one field line, also
    printed by `text_format.PrintField`, goes between them. This is exactly where `text_format`
    itself would put a non-zero value, and nothing is spelled out by hand.
    """
    number = _MAX_BATCH_SIZE_FIELD.number
    head = ModelConfig()
    tail = ModelConfig()
    head.CopyFrom(config)
    tail.CopyFrom(config)
    for field, _ in config.ListFields():
        if field.number < number:
            tail.ClearField(field.name)
        else:
            head.ClearField(field.name)
    line = io.StringIO()
    text_format.PrintField(_MAX_BATCH_SIZE_FIELD, 0, line)
    return text_format.MessageToString(head) + line.getvalue() + text_format.MessageToString(tail)


def write_config(config: model_config_pb2.ModelConfig, path: Path) -> Path:
    """Write `config` to `path` atomically (temporary file in the same directory + os.replace)."""
    text = config_to_text(config)
    tmp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            "w",
            encoding="utf-8",
            dir=path.parent,
            prefix=f".{path.name}.",
            suffix=".tmp",
            delete=False,
        ) as tmp:
            tmp_name = tmp.name
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        # NamedTemporaryFile is private (0600); the server may run as another user.
        os.chmod(tmp_name, path.stat().st_mode & 0o777 if path.exists() else _FILE_MODE)
        os.replace(tmp_name, path)
        tmp_name = None
    except OSError as e:
        raise ConfigError(f"{path}: cannot write model config ({e})") from e
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
    log.debug("wrote %s", path)
    return path
