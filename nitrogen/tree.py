"""The neutral syntax tree that both surface syntaxes produce.

`yaml_front.py` (YAML) and `dsl.py` (the Lark DSL) each turn text into these three node
kinds, with a `Span` on every node and every mapping key. `spec.py` then builds the
frozen model dataclasses from this tree, once, so both syntaxes share every check and
every diagnostic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .errors import Diagnostic, Span

Scalar = Union[int, str, bool, None]

DSL_SUFFIXES = (".ng", ".nitrogen")  # files parsed as the DSL; every other spec is YAML

# Limits both front-ends enforce before building the tree, so that hostile input fails with a diagnostic
# instead of a RecursionError (PyYAML's composer and Lark's transformer recurse once per level) or
# Python's 4300-digit int conversion limit. A real spec nests 4 levels (train.plateau.patience) and its
# largest value, train.seed < 2^64, has 20 digits.
MAX_DEPTH = 64        # E107: lists and mappings nested deeper than this
MAX_INT_CHARS = 100   # E108: an integer literal longer than this (digits, sign, prefix, underscores)


def too_deep(span: Span) -> Diagnostic:
    return Diagnostic("E107", f"the spec nests lists or mappings more than {MAX_DEPTH} levels deep", span,
                      hint="a spec needs 4 levels, as in train.plateau.patience")


def long_integer(text: str, span: Span) -> Diagnostic:
    return Diagnostic("E108", f"integer literal {text[:12]}... is {len(text)} characters long, over {MAX_INT_CHARS}",
                      span, hint="no spec value needs more than 20 digits (train.seed < 2^64)")


@dataclass(frozen=True, slots=True)
class TScalar:
    value: Scalar
    span: Span
    text: str | None = None  # the source text when it reads differently from the value (YAML `on` -> True)


@dataclass(frozen=True, slots=True)
class TSeq:
    items: tuple["TNode", ...]
    span: Span


@dataclass(frozen=True, slots=True)
class TKey:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class TMap:
    items: tuple[tuple[TKey, "TNode"], ...]
    span: Span


TNode = Union[TScalar, TSeq, TMap]
