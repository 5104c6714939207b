"""Check a trtexec command line against the flags one TensorRT release's trtexec accepts.

Value syntax follows sampleOptions.cpp: shapes are `name:dims` lists (dims `AxBxC` or
`scalar`, split at the last colon), `--memPoolSize` is a `pool:size` list (size a number with
an optional B/K/M/G unit, MiB by default), `--tacticSources`/`--preview` are `(+|-)name` lists.
"""

from __future__ import annotations

import difflib
import re
import shlex
from pathlib import PurePath

from tritonkit.tensorrt.api.surface import TensorRTSurface, TrtexecFlag

_SHAPE_FLAGS = frozenset({"--minShapes", "--optShapes", "--maxShapes", "--shapes",
                          "--minShapesCalib", "--optShapesCalib", "--maxShapesCalib"})
_POOL_FLAGS = frozenset({"--memPoolSize"})
_SIGNED_LIST_FLAGS = frozenset({"--tacticSources", "--preview"})
_KEY_ACTION_FLAGS = frozenset({"--tempfileControls"})  # key:allow|deny
_DIMS = re.compile(r"scalar|\d+(x\d+)*")
# kUNIT_MULTIPLIERS of sampleOptions.cpp: B, K, M, G (any case); std::stod reads the number.
_SIZE = re.compile(r"(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?[BKMGbkmg]?")


def _not_one_of(flag: TrtexecFlag, token: str) -> str:
    allowed = ", ".join(flag.values or ())
    return f"{token!r} is not one of {allowed}"


def _entries(value: str) -> list[str]:
    return value.split(",")


def _value_problems(flag: TrtexecFlag, value: str) -> list[str]:
    problems: list[str] = []
    if flag.name in _SHAPE_FLAGS:
        for entry in _entries(value):
            name, colon, dims = entry.rpartition(":")
            if not colon or not name:
                problems.append(f"{entry!r} is not name:dims (e.g. input:1x3x224x224)")
            elif not _DIMS.fullmatch(dims):
                problems.append(f"{entry!r}: dims {dims!r} are not AxBxC integers or 'scalar'")
    elif flag.name in _POOL_FLAGS:
        for entry in _entries(value):
            pool, colon, size = entry.rpartition(":")
            if not colon:
                problems.append(f"{entry!r} is not pool:size (e.g. workspace:1024M)")
                continue
            if not flag.accepts(pool):
                problems.append(f"pool {_not_one_of(flag, pool)}")
            if not _SIZE.fullmatch(size):
                problems.append(f"{entry!r}: size {size!r} is not a number with an optional "
                                "B/K/M/G unit")
    elif flag.name in _SIGNED_LIST_FLAGS and flag.values is not None:
        for entry in _entries(value):
            if entry[:1] not in ("+", "-"):
                problems.append(f"{entry!r} must start with + (enable) or - (disable)")
            elif not flag.accepts(entry[1:]):
                problems.append(_not_one_of(flag, entry[1:]))
    elif flag.name in _KEY_ACTION_FLAGS and flag.values is not None:
        for entry in _entries(value):
            key, colon, action = entry.rpartition(":")
            if not colon:
                problems.append(f"{entry!r} is not key:allow or key:deny")
            problems += [_not_one_of(flag, t) for t in (key, action) if not flag.accepts(t)]
    elif not flag.accepts(value):
        problems.append(_not_one_of(flag, value))
    return problems


def check_trtexec_command(command: str, surface: TensorRTSurface) -> list[str]:
    """Problems of `command` for trtexec of `surface`'s release; an empty list means fine."""
    release = f"trtexec of TensorRT {surface.version}"
    try:
        words = shlex.split(command)
    except ValueError as e:
        return [f"cannot split the command line: {e}"]
    if not words or PurePath(words[0]).name != "trtexec":
        return [f"the command must start with trtexec, not {words[0] if words else 'nothing'!r}"]
    problems: list[str] = []
    for word in words[1:]:
        if not word.startswith("-"):
            problems.append(f"{word!r}: {release} takes no positional arguments")
            continue
        name, equals, value = word.partition("=")
        flag = surface.trtexec_flags.get(name)
        if flag is None:
            close = difflib.get_close_matches(name, list(surface.trtexec_flags), n=1, cutoff=0.8)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{name}: {release} has no such flag{hint}")
        elif not flag.takes_value:
            continue  # a switch: trtexec reads any `=value` as true
        elif not equals or not value:
            problems.append(f"{name}: {release} needs a value ({name}=...)")
        else:
            problems += [f"{name}={value}: {p} ({release})" for p in _value_problems(flag, value)]
    return problems
