"""Just enough C++ text handling to read NVIDIA's sources: comments, `#if` blocks, balanced scans.

Not a C++ parser: literals and comments are skipped exactly, brackets are matched, and
preprocessor conditions are evaluated with C semantics (an undefined macro is 0).
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Mapping

from tritonkit.errors import TensorRTApiError

log = logging.getLogger(__name__)

_IDENT_CHAR = re.compile(r"[A-Za-z0-9_]")
_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}


def literal_end(text: str, i: int) -> int:
    """Index just past the string/char literal starting at `i`, or `i` if none starts there."""
    if text.startswith('R"', i) and (i == 0 or not _IDENT_CHAR.match(text[i - 1])):
        open_paren = text.index("(", i)
        delimiter = text[i + 2 : open_paren]
        return text.index(f'){delimiter}"', open_paren) + len(delimiter) + 2
    quote = text[i] if i < len(text) else ""
    if quote not in "\"'" or not quote:
        return i
    if quote == "'" and i > 0 and _IDENT_CHAR.match(text[i - 1]):
        return i  # a digit separator such as 1'000
    j = i + 1
    while j < len(text) and text[j] != quote:
        j += 2 if text[j] == "\\" else 1
    return j + 1


def strip_comments(text: str) -> str:
    """`text` with every comment replaced by spaces (newlines kept, so line numbers hold)."""
    out: list[str] = []
    i = 0
    while i < len(text):
        end = literal_end(text, i)
        if end != i:
            out.append(text[i:end])
            i = end
        elif text.startswith("//", i):
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            out.append(" " * (end - i))
            i = end
        elif text.startswith("/*", i):
            end = text.index("*/", i + 2) + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


_ALLOWED_NODES = (ast.Expression, ast.BoolOp, ast.UnaryOp, ast.Compare, ast.Constant, ast.And,
                  ast.Or, ast.Not, ast.USub, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _evaluate(condition: str, defines: Mapping[str, int]) -> bool:
    expr = re.sub(r"\bdefined\s*\(\s*(\w+)\s*\)|\bdefined\s+(\w+)",
                  lambda m: "1" if (m.group(1) or m.group(2)) in defines else "0", condition)
    expr = expr.replace("&&", " and ").replace("||", " or ")
    expr = re.sub(r"!(?!=)", " not ", expr)
    expr = re.sub(r"\b[A-Za-z_]\w*\b",
                  lambda m: m.group(0) if m.group(0) in ("and", "or", "not")
                  else str(int(defines.get(m.group(0), 0))), expr)
    expr = re.sub(r"\b(\d+)[uUlL]+\b", r"\1", expr)
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise TensorRTApiError(f"cannot evaluate preprocessor condition {condition!r}") from e
    if not all(isinstance(node, _ALLOWED_NODES) for node in ast.walk(tree)):
        raise TensorRTApiError(f"unsupported preprocessor condition {condition!r}")
    return bool(eval(compile(tree, "<#if>", "eval"), {"__builtins__": {}}, {}))


def preprocess(text: str, defines: Mapping[str, int]) -> str:
    """Drop the lines of inactive `#if/#ifdef/#ifndef/#elif/#else` branches and all directives.

    Line count is preserved (dropped lines become empty). Expects comment-free text.
    """
    lines = text.split("\n")
    out: list[str] = []
    # Each frame: (enclosing block active, a branch was taken, this branch active).
    stack: list[tuple[bool, bool, bool]] = []
    active = True
    for line in lines:
        m = re.match(r"\s*#\s*(\w+)\s*(.*)", line)
        if not m:
            out.append(line if active else "")
            continue
        directive, rest = m.group(1), m.group(2).strip()
        if directive in ("if", "ifdef", "ifndef"):
            if directive == "if":
                taken = active and _evaluate(rest, defines)
            else:
                taken = active and ((rest.split()[0] in defines) == (directive == "ifdef"))
            stack.append((active, taken, taken))
            active = taken
        elif directive in ("elif", "else"):
            if not stack:
                raise TensorRTApiError(f"#{directive} without #if")
            outer, done, _ = stack.pop()
            branch = outer and not done and (directive == "else" or _evaluate(rest, defines))
            stack.append((outer, done or branch, branch))
            active = branch
        elif directive == "endif":
            if not stack:
                raise TensorRTApiError("#endif without #if")
            active = stack.pop()[0]
        out.append("")
    if stack:
        raise TensorRTApiError("unterminated #if block")
    return "\n".join(out)


def read_source(text: str, defines: Mapping[str, int]) -> str:
    """Comment-free text of the active preprocessor branches."""
    return preprocess(strip_comments(text), defines)


def matching(text: str, i: int) -> int:
    """Index of the bracket closing `text[i]` (one of `([{<`), skipping literals."""
    opener = text[i]
    closer = _PAIRS[opener]
    depth = 0
    j = i
    while j < len(text):
        end = literal_end(text, j)
        if end != j:
            j = end
            continue
        c = text[j]
        if c == opener:
            depth += 1
        elif c == closer:
            depth -= 1
            if depth == 0:
                return j
        j += 1
    raise TensorRTApiError(f"unbalanced {opener!r} at offset {i}: {text[i:i + 60]!r}")


def split_top_level(text: str, *, angle: bool = False) -> list[str]:
    """Split on commas outside brackets and literals (`angle`: also outside `<...>`)."""
    parts: list[str] = []
    depth = 0
    start = 0
    j = 0
    openers = "([{<" if angle else "([{"
    closers = ")]}>" if angle else ")]}"
    while j < len(text):
        end = literal_end(text, j)
        if end != j:
            j = end
            continue
        c = text[j]
        if c in openers:
            depth += 1
        elif c in closers:
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:j].strip())
            start = j + 1
        j += 1
    tail = text[start:].strip()
    if tail or parts:
        parts.append(tail)
    return parts


def string_value(token: str) -> str | None:
    """The value of a plain string literal token such as `"FP16"` (None if it is not one)."""
    m = re.fullmatch(r'\s*"((?:[^"\\]|\\.)*)"\s*', token)
    return m.group(1) if m else None


def skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i
