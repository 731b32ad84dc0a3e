"""The neutral syntax tree that both surface syntaxes produce.

`yaml_front.py` (YAML) and `dsl.py` (the Lark DSL) each turn text into these three node
kinds, with a `Span` on every node and every mapping key. `spec.py` then builds the
frozen model dataclasses from this tree, once, so both syntaxes share every check and
every diagnostic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .errors import Span

Scalar = Union[int, str, bool, None]


@dataclass(frozen=True, slots=True)
class TScalar:
    value: Scalar
    span: Span


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
