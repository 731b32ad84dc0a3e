"""Diagnostics shared by every pass.

`NitrogenError` is the only exception that reaches a user: it carries one or more
`Diagnostic`s, each pointing at the spec (`file:line:col`). `InternalError` marks a
nitrogen bug (an IR invariant or a template failure) and is reported as such.
This module imports nothing from nitrogen.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True, slots=True)
class Span:
    """A position in a spec file; line and col are 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str  # E1xx syntax, E2xx spec semantics, E3xx bounds, E9xx environment
    message: str
    span: Span | None = None
    notes: tuple[str, ...] = ()
    hint: str | None = None
    severity: str = "error"

    def render(self, source_lines: dict[str, list[str]] | None = None) -> str:
        """GCC/rustc-like text: location, message, source line with a caret, notes, hint."""
        where = f"{self.span}: " if self.span else ""
        out = [f"{where}{self.severity}[{self.code}]: {self.message}"]
        lines = (source_lines or {}).get(self.span.file) if self.span else None
        if self.span and lines and 1 <= self.span.line <= len(lines):
            text = lines[self.span.line - 1].rstrip("\n")
            gutter = f"{self.span.line:>5} | "
            out.append(gutter + text)
            out.append(" " * (len(gutter) - 2) + "| " + " " * (self.span.col - 1) + "^")
        out.extend(f"  note: {n}" for n in self.notes)
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


class NitrogenError(Exception):
    """User-facing failure: one or more diagnostics, all collected before raising."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics))


class InternalError(Exception):
    """A nitrogen bug, never the user's fault."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'expected one of: a, b (did you mean 'b'?)' for enum-like mistakes."""
    options = sorted(choices)
    close = difflib.get_close_matches(word, options, n=1)
    tail = f" (did you mean '{close[0]}'?)" if close else ""
    return f"expected one of: {', '.join(options)}{tail}"


@dataclass
class DiagnosticSink:
    """Collects diagnostics during a pass; `raise_if_any` fails once with all of them."""

    items: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, span: Span | None, *, notes: Iterable[str] = (),
              hint: str | None = None) -> None:
        self.items.append(Diagnostic(code, message, span, tuple(notes), hint))

    def raise_if_any(self) -> None:
        if self.items:
            raise NitrogenError(self.items)
