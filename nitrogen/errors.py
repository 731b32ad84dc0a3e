"""Diagnostics shared by every pass.

`NitrogenError` is the only exception that reaches a user: it carries one or more
`Diagnostic`s, each pointing at the spec (`file:line:col`). `InternalError` marks a
nitrogen bug (an IR invariant or a template failure) and is reported as such.
This module imports nothing from nitrogen.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True, slots=True)
class Span:
    """A position in a spec file; line and col are 1-based. Line 0 means the file as a whole (a file that
    is missing or cannot be read has no text to point into): it renders as `file` alone."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file


_WIDTH = 100  # longest source excerpt shown under a diagnostic


# Line breaks as each front-end counts them: YAML 1.1 breaks lines at CR LF, CR, LF, NEL, LS and PS; Lark
# counts LF only (a form feed is white space in the DSL). str.splitlines would also break at VT, FF and
# \x1c-\x1e, and show the wrong source line under a diagnostic.
YAML_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
DSL_BREAKS = re.compile("\r?\n")


def source_lines(text: str, dsl: bool) -> list[str]:
    """The lines of a spec, numbered as its front-end numbers them in spans."""
    return (DSL_BREAKS if dsl else YAML_BREAKS).split(text) if text else []


def _blank(char: str) -> str:
    """What goes under `char` in the caret line: a tab under a tab, two spaces under a double-width
    character (CJK, full-width forms), nothing under a combining mark, one space otherwise."""
    if char == "\t":
        return "\t"
    if unicodedata.combining(char):
        return ""
    return "  " if unicodedata.east_asian_width(char) in ("W", "F") else " "


def printable(text: str, keep: str = "") -> str:
    """`text` with every non-printable character except those in `keep` written as an escape (\\n, \\x1b,
    \\u2028). Messages quote user strings (a key, a name, a value with a quoted newline or an ANSI escape
    sequence); escaping keeps each diagnostic on its own lines and nothing from a spec reaches the terminal
    as a control sequence."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii") for c in text)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    code: str  # E1xx syntax, E2xx spec semantics, E3xx bounds, E9xx environment
    message: str
    span: Span | None = None
    notes: tuple[str, ...] = ()
    hint: str | None = None
    severity: str = "error"
    details: tuple[str, ...] = ()  # a tool's output (compiler, make, pip), shown indented line by line

    def render(self, source_lines: dict[str, list[str]] | None = None) -> str:
        """GCC/rustc-like text: location, message, source line with a caret, notes, hint, tool output.

        The header is always one line and every other line is indented, so `file:line:col: error[Ennn]:`
        at the start of a line means exactly one diagnostic (editors and CI annotators rely on that)."""
        where = f"{self.span}: " if self.span else ""
        out = [f"{printable(where)}{self.severity}[{self.code}]: {printable(self.message)}"]
        lines = (source_lines or {}).get(self.span.file) if self.span else None
        if self.span and lines and 1 <= self.span.line <= len(lines):
            # Control characters (a NUL of a UTF-16 file, an escape sequence) must not reach the terminal.
            text = "".join(c if c.isprintable() or c == "\t" else "\ufffd" for c in lines[self.span.line - 1])
            col = self.span.col
            if len(text) > _WIDTH:  # a 5000-digit literal: show the part around the caret
                start = max(0, min(col - 1 - _WIDTH // 2, len(text) - _WIDTH))
                text = ("..." if start else "") + text[start:start + _WIDTH] + \
                    ("..." if start + _WIDTH < len(text) else "")
                col = col - start + (3 if start else 0)
            gutter = f"{self.span.line:>5} | "
            out.append(gutter + text)
            pad = "".join(_blank(c) for c in text[:col - 1])
            out.append(" " * (len(gutter) - 2) + "| " + pad + "^")
        out.extend(f"  note: {printable(n)}" for n in self.notes)
        if self.hint:
            out.append(f"  hint: {printable(self.hint)}")
        out.extend(f"    {printable(line, keep=chr(9))}" for d in self.details for line in d.splitlines())
        return "\n".join(out)


class NitrogenError(Exception):
    """User-facing failure: one or more diagnostics, all collected before raising."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics))


class InternalError(Exception):
    """A nitrogen bug, never the user's fault."""


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice `word` was probably meant to be, or None."""
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'expected one of: a, b (did you mean 'b'?)' for enum-like mistakes."""
    options = sorted(choices)
    close = closest(word, options)
    tail = f" (did you mean '{close}'?)" if close else ""
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
