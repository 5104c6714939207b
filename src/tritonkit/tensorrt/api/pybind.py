"""Python names bound by pybind11 sources: enums, classes (with inherited members), module names.

Reads `py::enum_<T>(scope, "Name", ...)` and `py::class_<T, Bases...>(scope, "Name", ...)`
(also the named form `py::class_<T> var{m, "Name"}` continued by `var.def(...)` statements),
their `.value/.def*` chains however they are split over lines, `m.def(...)` and `m.attr(...)`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tritonkit.errors import TensorRTApiError
from tritonkit.tensorrt.api.cpp_text import (
    matching,
    skip_space,
    split_top_level,
    string_value,
)

log = logging.getLogger(__name__)

# Chain calls that bind one named attribute (their first argument is the name).
_NAMED_DEFS = frozenset({
    "def", "def_static", "def_property", "def_property_readonly", "def_property_static",
    "def_property_readonly_static", "def_readwrite", "def_readonly", "def_readwrite_static",
    "def_readonly_static",
})
_BINDING = re.compile(r"\bpy::(class_|enum_)\s*<")
_MODULE_DEF = re.compile(r"(?<![\w.>])m\s*\.\s*def\s*\(")
_MODULE_ATTR = re.compile(r"(?<![\w.>])m\s*\.\s*attr\s*\(\s*\"(\w+)\"\s*\)\s*=\s*([^;]+);")


@dataclass
class _Binding:
    kind: str  # "class" or "enum"
    name: str  # Python name, "Outer.Inner" when bound inside a class
    cpp: str  # C++ type, namespaces dropped
    template_args: list[str]
    members: set[str] = field(default_factory=set)
    values: dict[str, str] = field(default_factory=dict)  # enum member -> C++ enumerator
    exported: bool = False  # .export_values()
    scope: str | None = None  # Python name of the enclosing class, None for the module


@dataclass
class BoundNames:
    """What a set of binding sources exposes (before inheritance is flattened)."""

    enums: dict[str, tuple[str, ...]]
    classes: dict[str, tuple[str, ...]]
    functions: tuple[str, ...]
    module_attributes: dict[str, str]


def _cpp_name(text: str, parts: int = 1) -> str:
    """`nvinfer1::DataType::kFLOAT` -> `kFLOAT` (parts=1) or `DataType::kFLOAT` (parts=2)."""
    return "::".join("".join(text.split()).split("::")[-parts:])


def _parse_chain(text: str, i: int) -> tuple[list[tuple[str, str]], int]:
    """`.name(args)` calls starting at `text[i]`; returns them and the index after the chain."""
    calls: list[tuple[str, str]] = []
    while True:
        j = skip_space(text, i)
        if j >= len(text) or text[j] != ".":
            return calls, j
        m = re.compile(r"\.\s*(\w+)\s*").match(text, j)
        if not m or m.end() >= len(text) or text[m.end()] != "(":
            return calls, j
        close = matching(text, m.end())
        calls.append((m.group(1), text[m.end() + 1 : close]))
        i = close + 1


def _apply(binding: _Binding, calls: Iterable[tuple[str, str]], where: str) -> None:
    for method, args in calls:
        first = split_top_level(args)[0] if args.strip() else ""
        if binding.kind == "enum":
            if method == "value":
                name = string_value(first)
                if name is None:
                    raise TensorRTApiError(f"{where}: {binding.name}.value({args[:40]!r}...)")
                parts = split_top_level(args)
                binding.values[name] = _cpp_name(parts[1], 2) if len(parts) > 1 else name
            elif method == "export_values":
                binding.exported = True
            continue
        if method in _NAMED_DEFS:
            name = string_value(first)
            if name is not None:
                binding.members.add(name)
            elif method == "def" and first.startswith("py::init"):
                binding.members.add("__init__")
            else:
                log.debug("%s: %s.%s without a literal name skipped", where, binding.name, method)


def _find_bindings(text: str, where: str) -> tuple[list[_Binding], dict[str, _Binding]]:
    bindings: list[_Binding] = []
    variables: dict[str, _Binding] = {}
    for m in _BINDING.finditer(text):
        close_angle = matching(text, m.end() - 1)
        template_args = split_top_level(text[m.end() : close_angle], angle=True)
        j = skip_space(text, close_angle + 1)
        variable = None
        var = re.compile(r"(\w+)\s*").match(text, j)
        if var and text[var.end() : var.end() + 1] in ("{", "("):
            variable, j = var.group(1), var.end()
        if j >= len(text) or text[j] not in "({":
            continue  # a type mention (e.g. a template argument), not a binding
        close = matching(text, j)
        args = split_top_level(text[j + 1 : close])
        name = string_value(args[1]) if len(args) > 1 else None
        if name is None:
            raise TensorRTApiError(f"{where}: cannot read the Python name of {text[m.start():j]!r}")
        kind = "class" if m.group(1) == "class_" else "enum"
        scope_expr = args[0].strip()
        scope = None
        if scope_expr != "m":
            if scope_expr not in variables:
                raise TensorRTApiError(f"{where}: {name!r} is bound in scope {scope_expr!r}, "
                                       "which is neither `m` nor a bound class")
            scope = variables[scope_expr].name
        binding = _Binding(kind=kind, name=f"{scope}.{name}" if scope else name,
                           cpp=_cpp_name(template_args[0]), template_args=template_args[1:],
                           scope=scope)
        bindings.append(binding)
        if variable:
            variables[variable] = binding
        else:
            calls, _ = _parse_chain(text, close + 1)
            _apply(binding, calls, where)
    for variable, binding in variables.items():
        for m in re.finditer(rf"(?<![\w.>]){re.escape(variable)}\s*(?=\.)", text):
            calls, _ = _parse_chain(text, m.end())
            _apply(binding, calls, where)
    return bindings, variables


def read_bindings(sources: Iterable[tuple[str, str]]) -> BoundNames:
    """Names bound by comment-free, preprocessed sources given as (file name, text)."""
    bindings: list[_Binding] = []
    functions: set[str] = set()
    raw_attributes: dict[str, str] = {}
    for where, text in sources:
        found, _ = _find_bindings(text, where)
        bindings.extend(found)
        for m in _MODULE_DEF.finditer(text):
            close = matching(text, m.end() - 1)
            name = string_value(split_top_level(text[m.end() : close])[0])
            if name is None:
                raise TensorRTApiError(f"{where}: m.def without a literal name")
            functions.add(name)
        for m in _MODULE_ATTR.finditer(text):
            raw_attributes[m.group(1)] = _cpp_name(m.group(2), 2)

    by_name: dict[str, _Binding] = {}
    for binding in bindings:
        if binding.name in by_name:
            log.warning("%s is bound twice; merging its members", binding.name)
            by_name[binding.name].members |= binding.members
            by_name[binding.name].values.update(binding.values)
        else:
            by_name[binding.name] = binding
    classes_by_cpp = {b.cpp: b for b in by_name.values() if b.kind == "class"}

    # Enums bound inside a class become class attributes, as do their exported values.
    enumerators: dict[str, str] = {}  # C++ "Type::kX" (namespaces dropped) -> "Enum.MEMBER"
    module_attributes: dict[str, str] = {}
    for binding in by_name.values():
        if binding.kind != "enum":
            continue
        for member, cpp in binding.values.items():
            enumerators[cpp] = f"{binding.name}.{member}"
        if binding.scope:
            outer = by_name[binding.scope]
            outer.members.add(binding.name.rsplit(".", 1)[1])
            if binding.exported:
                outer.members |= set(binding.values)
        elif binding.exported:
            module_attributes.update({v: f"{binding.name}.{v}" for v in binding.values})
    for name, expression in raw_attributes.items():
        module_attributes[name] = enumerators.get(expression, expression)

    def flattened(binding: _Binding, seen: frozenset[str] = frozenset()) -> set[str]:
        members = set(binding.members)
        for arg in binding.template_args:
            base = classes_by_cpp.get(_cpp_name(arg))
            if base is not None and base.name not in seen:
                members |= flattened(base, seen | {binding.name})
        return members

    return BoundNames(
        enums={b.name: tuple(sorted(b.values)) for b in by_name.values() if b.kind == "enum"},
        classes={b.name: tuple(sorted(flattened(b)))
                 for b in by_name.values() if b.kind == "class"},
        functions=tuple(sorted(functions)),
        module_attributes=module_attributes,
    )
