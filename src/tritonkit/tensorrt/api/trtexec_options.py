"""The flags trtexec accepts, read from samples/common/sampleOptions.cpp (+ sampleOptions.h).

trtexec runs `AllOptions::parse`; every `X.parse(arguments)` and every free function it calls
with `arguments` is followed. A flag is a string literal such as "--fp16" passed to a call.
Its destination variable's type decides whether it takes a value (`bool`: a switch). Its
enumerated values are the literals compared (`==`, `.compare`, `{"key", ...}` tables) between
it and the next flag, or in a function given its variable, when that code throws on others.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from tritonkit.errors import TensorRTApiError
from tritonkit.tensorrt.api.cpp_text import matching, skip_space, split_top_level
from tritonkit.tensorrt.api.surface import TrtexecFlag

log = logging.getLogger(__name__)

ENTRY = "AllOptions::parse"
# Option-reading primitives of sampleOptions.cpp: argument index of the destination variable.
_PRIMITIVES = {"getOption": 2, "getAndDelOption": 2, "getAndDelOptionWithPosition": 2,
               "getAndDelOptionBehind": 3, "getAndDelRepeatedOption": 2, "getAndDelNegOption": -1}
_FLAG = re.compile(r"-{1,2}[A-Za-z][\w+-]*")
_LITERAL_ARG = re.compile(r'(?<=[(,])\s*"(-{1,2}[A-Za-z][\w+-]*)"\s*(?=[,)])')
_QUALIFIER = re.compile(r"(const|noexcept|override)\b\s*")
_MEMBER_PARSE = re.compile(r"(?<![\w.>])(\w+)\s*\.\s*parse\s*\(\s*arguments\s*\)")
_PASSES_ARGUMENTS = re.compile(r"[(,]\s*arguments\s*[,)]")
# `x == "lit"`, `x.compare("lit")`, and the keys of `{{"lit", value}, ...}` lookup tables.
_COMPARISON = re.compile(r'(?:==|!=)\s*"(?P<compared>(?:[^"\\]|\\.)+)"'
                         r'|\.compare\s*\(\s*"(?P<method>(?:[^"\\]|\\.)+)"\s*\)'
                         r'|\{\s*"(?P<key>(?:[^"\\]|\\.)+)"\s*,')
_KEYWORDS = frozenset({"if", "while", "for", "switch", "return", "catch", "sizeof", "throw"})


@dataclass
class _Function:
    name: str
    params: list[str]
    body: str
    owner: str | None  # class of a member function, for member types


def _params(text: str) -> list[str]:
    names = []
    for param in split_top_level(text, angle=True):
        declaration = param.split("=")[0].strip()
        m = re.search(r"(\w+)\s*(?:\[\s*\])?$", declaration)
        names.append(m.group(1) if m and " " in declaration else "")
    return names


def _definition(text: str, name: str) -> _Function | None:
    """The body of function `name` (`Cls::parse`, `parseHelp`, `stringToValue<T>`) or a lambda."""
    pattern = re.escape(name).replace(r"<", r"\s*<\s*").replace(r">", r"\s*>")
    for m in re.finditer(rf"(?<![\w:.>])(?:{pattern})\s*\(", text):
        close = matching(text, m.end() - 1)
        j = skip_space(text, close + 1)
        while q := _QUALIFIER.match(text, j):
            j = q.end()
        if text[j : j + 1] == "{":
            owner = name.split("::", maxsplit=1)[0] if "::" in name else None
            return _Function(name, _params(text[m.end() : close]),
                             text[j : matching(text, j) + 1], owner)
    lam = re.search(rf"\bauto\s+(?:const\s+)?{re.escape(name)}\s*=\s*\[", text)
    if lam:
        j = matching(text, lam.end() - 1) + 1
        j = skip_space(text, j)
        params: list[str] = []
        if text[j : j + 1] == "(":
            close = matching(text, j)
            params, j = _params(text[j + 1 : close]), close + 1
        j = text.index("{", j)
        return _Function(name, params, text[j : matching(text, j) + 1], None)
    return None


def _calls(body: str) -> list[tuple[str, int, int]]:
    """(callee, start of call, index of its closing paren) for every call in `body`."""
    found = []
    for m in re.finditer(r"(?<![\w.>:])([A-Za-z_][\w:]*)\s*(?:<[^;(){}]*>)?\s*\(", body):
        if m.group(1) in _KEYWORDS:
            continue
        try:
            found.append((m.group(1), m.start(), matching(body, m.end() - 1)))
        except TensorRTApiError:
            continue  # the call runs past the end of this excerpt
    return found


class _Reader:
    def __init__(self, cpp: str, header: str, where: str) -> None:
        self.cpp, self.header, self.where = cpp, header, where

    def member_type(self, owner: str | None, variable: str) -> str | None:
        if owner is None:
            return None
        m = re.search(rf"\b(?:class|struct)\s+{re.escape(owner)}\b[^;{{]*\{{", self.header)
        if not m:
            return None
        block = self.header[m.end() - 1 : matching(self.header, m.end() - 1) + 1]
        decl = re.search(rf"^\s*(?:static\s+)?([\w:]+(?:\s*<[^;]*?>)?)\s+{re.escape(variable)}"
                         r"\s*(?:\{[^;]*\}|=[^;]*)?\s*;", block, re.MULTILINE)
        return decl.group(1) if decl else None

    def variable_type(self, function: _Function, variable: str, before: int) -> str | None:
        declarations = list(re.finditer(
            rf"(?<![\w.>:])([\w:]+(?:\s*<[^;(){{}}]*>)?)\s*[&*]?\s+{re.escape(variable)}"
            r"\s*(?=[{;=,)\[])", function.body[:before]))
        if declarations and declarations[-1].group(1) not in ("return", "else"):
            return declarations[-1].group(1)
        return self.member_type(function.owner, variable)

    def entry_functions(self) -> list[_Function]:
        """AllOptions::parse and everything it reaches with `arguments`."""
        start = _definition(self.cpp, ENTRY)
        if start is None:
            raise TensorRTApiError(f"{self.where}: no {ENTRY}; not trtexec's sampleOptions.cpp?")
        seen, queue, out = {ENTRY}, [start], []
        while queue:
            function = queue.pop(0)
            out.append(function)
            for m in _MEMBER_PARSE.finditer(function.body):
                member = self.member_type(function.owner, m.group(1))
                name = f"{member}::parse" if member else None
                if name and name not in seen and (found := _definition(self.cpp, name)):
                    seen.add(name)
                    queue.append(found)
            for callee, start_at, close in _calls(function.body):
                args = function.body[start_at : close + 1]
                if callee in _PRIMITIVES or callee in seen or not _PASSES_ARGUMENTS.search(args):
                    continue
                if found := _definition(self.cpp, callee):
                    seen.add(callee)
                    queue.append(found)
        return out

    def flags(self) -> dict[str, TrtexecFlag]:
        flags: dict[str, TrtexecFlag] = {}
        for function in self.entry_functions():
            occurrences = [(m.group(1), m.start()) for m in _LITERAL_ARG.finditer(function.body)]
            for index, (name, at) in enumerate(occurrences):
                end = (occurrences[index + 1][1] if index + 1 < len(occurrences)
                       else len(function.body))
                flag = self._flag(function, name, at, end)
                if name in flags and flags[name] != flag:
                    log.debug("%s: %s read twice; keeping the first reading", self.where, name)
                flags.setdefault(name, flag)
        return flags

    def _destination(self, function: _Function, at: int) -> tuple[_Function, str | None, int]:
        """The function holding the primitive call for the literal at `at`, its destination."""
        call = max((c for c in _calls(function.body) if c[1] < at <= c[2]), key=lambda c: c[1])
        callee, start, close = call
        open_paren = function.body.index("(", start)
        args = split_top_level(function.body[open_paren + 1 : close])
        if callee in _PRIMITIVES:
            index = _PRIMITIVES[callee]
            return function, (None if index < 0 else args[index]), close
        helper = _definition(function.body, callee) or _definition(self.cpp, callee)
        position = next(i for i, a in enumerate(args) if _FLAG.fullmatch(a.strip('" ')))
        if helper is None or position >= len(helper.params):
            raise TensorRTApiError(f"{self.where}: cannot follow {callee}() for a trtexec flag")
        parameter = helper.params[position]
        for inner, inner_start, inner_close in _calls(helper.body):
            if inner not in _PRIMITIVES:
                continue
            open_paren = helper.body.index("(", inner_start)
            inner_args = split_top_level(helper.body[open_paren + 1 : inner_close])
            if len(inner_args) > 1 and inner_args[1] == parameter:
                index = _PRIMITIVES[inner]
                return helper, (None if index < 0 else inner_args[index]), inner_close
        raise TensorRTApiError(f"{self.where}: {callee}() does not read its flag argument")

    def _flag(self, function: _Function, name: str, at: int, end: int) -> TrtexecFlag:
        holder, variable, after = self._destination(function, at)
        kind = "bool" if variable is None else self.variable_type(holder, variable, after)
        if kind is None:
            log.warning("%s: type of %s's variable %s unknown; assuming it takes a value",
                        self.where, name, variable)
        if kind == "bool":
            return TrtexecFlag(name=name, values=None, takes_value=False)
        region = function.body[at:end] if holder is function else holder.body
        regions = [region]
        if variable:
            regions += [f.body for f in self._functions_given(region, variable)]
            if kind and (spec := _definition(self.cpp, f"stringToValue<{kind}>")):
                regions.append(spec.body)
        values, any_case = _compared_literals(regions)
        if not values or not any("throw" in r for r in regions):
            return TrtexecFlag(name=name, values=None, takes_value=True)
        return TrtexecFlag(name=name, values=tuple(sorted(values)), takes_value=True,
                           values_any_case=tuple(sorted(any_case)))

    def _functions_given(self, region: str, variable: str) -> list[_Function]:
        found = []
        for callee, start, close in _calls(region):
            args = split_top_level(region[region.index("(", start) + 1 : close])
            if variable in args and callee not in _PRIMITIVES:
                if function := _definition(self.cpp, callee):
                    found.append(function)
        return found


def _operand_before(text: str, end: int) -> str:
    """The expression just before `end` (an identifier, call or member access)."""
    j = end
    while j > 0 and text[j - 1].isspace():
        j -= 1
    stop = j
    while j > 0:
        if text[j - 1] == ")":
            depth, k = 0, j - 1
            while k >= 0:
                depth += {")": 1, "(": -1}.get(text[k], 0)
                if depth == 0:
                    break
                k -= 1
            j = k
        elif re.match(r"[\w.:>-]", text[j - 1]):
            j -= 1
        else:
            break
    return text[j:stop]


def _compared_literals(regions: list[str]) -> tuple[set[str], set[str]]:
    values: set[str] = set()
    any_case: set[str] = set()
    for region in regions:
        folded_vars = set(re.findall(r"(\w+)\s*=\s*[\w:]*to(?:Upper|Lower)\w*\s*\(", region))
        for m in _COMPARISON.finditer(region):
            if m.group("key"):  # a {"key", value} lookup table
                values.add(m.group("key"))
                continue
            if m.group("compared"):
                literal, at = m.group("compared"), m.start()
            else:
                literal, at = m.group("method"), region.rfind(".compare", 0, m.end())
            values.add(literal)
            operand = _operand_before(region, at)
            if re.search(r"to(?:Upper|Lower)", operand) or operand in folded_vars:
                any_case.add(literal)
    return values, any_case


def read_trtexec_flags(cpp: str, header: str, where: str) -> dict[str, TrtexecFlag]:
    """Flags of trtexec from comment-free, preprocessed sampleOptions.cpp and .h texts."""
    flags = _Reader(cpp, header, where).flags()
    if not flags:
        raise TensorRTApiError(f"{where}: no trtexec flags found")
    return flags
