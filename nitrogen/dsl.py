"""DSL surface syntax -> neutral tree. The only module that imports `lark`.

The grammar (`grammar.lark`) mirrors the YAML keys one to one: `key = value` for a scalar
or list, `key { ... }` for a mapping, and `layers { kind(args) ... }` for the layer list,
where a single positional argument stands for the kind's main size (`linear(100)`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import lark
from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from .errors import Diagnostic, NitrogenError, Span
from .hints import float_hint
from .spec import PRIMARY_KEY, SECTION_KEYS
from .tree import MAX_DEPTH, MAX_INT_CHARS, TKey, TMap, TNode, TScalar, TSeq, long_integer, too_deep

_GRAMMAR = Path(__file__).with_name("grammar.lark")


def cache_dir() -> Path | None:
    """Where the built parser is kept: $NITROGEN_CACHE_DIR (empty: no cache), else $XDG_CACHE_HOME/nitrogen,
    else ~/.cache/nitrogen."""
    chosen = os.environ.get("NITROGEN_CACHE_DIR")
    if chosen is not None:
        return Path(chosen) if chosen else None
    home = os.path.expanduser("~")
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.join(home, ".cache") if home != "~" else None)
    return Path(base) / "nitrogen" if base else None  # no home directory: no cache (never one in the cwd)


@functools.cache
def parser() -> Lark:
    """The LALR parser of grammar.lark. Building it takes ~0.3 s, loading a saved one ~3 ms, so it is saved
    in cache_dir() under a name that hashes the grammar text, the options and the Lark and Python versions:
    an edited grammar never meets a stale parser. The file is written to a temporary name and renamed, so
    parallel processes see a whole file or none; it is loaded only if this user owns it; any failure (a
    read-only or missing directory, a corrupt file) falls back to building the parser."""
    grammar = _GRAMMAR.read_text(encoding="utf-8")
    options = {"parser": "lalr", "propagate_positions": True}
    key = hashlib.sha256("\0".join((grammar, repr(sorted(options.items())), lark.__version__,
                                    sys.version.split()[0])).encode()).hexdigest()[:32]
    where = cache_dir()
    path = where / f"dsl-parser-{key}.lark" if where else None
    if path is not None:
        try:
            with path.open("rb") as f:
                if not hasattr(os, "getuid") or os.fstat(f.fileno()).st_uid == os.getuid():  # never unpickle
                    return Lark.load(f)                                                     # another user's file
        except Exception:  # noqa: BLE001 - a missing, foreign or corrupt cache file: build the parser
            pass
    # `strict=True` (grammar conflicts as errors) needs the optional `interegular` package; the tests load
    # the grammar that way once, so the run-time parser does not need it.
    built = Lark(grammar, **options)  # type: ignore[arg-type]
    if path is not None:
        tmp = None
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".dsl-parser-", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                built.save(f)
            os.replace(tmp, path)
        except OSError:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
    return built


_TOKEN_NAMES = {"LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
                "EQUAL": "'='", "COMMA": "','", "NAME": "a name", "INT": "an integer",
                "ESCAPED_STRING": "a string", "MODEL": "'model'", "LAYERS": "'layers'", "$END": "end of file"}


def _describe_expected(expected: set[str]) -> str:
    # FLOAT exists only to report a fraction as E105: never offer it.
    names = sorted({_TOKEN_NAMES.get(e, e) for e in expected if e != "FLOAT"})
    return ", ".join(names)


# Strings, comments and brackets, in the grammar's terms: what `_check_depth` needs to see nesting.
_NESTING = re.compile(r'"(?:[^"\\\n]|\\.)*"|(?://|#)[^\n]*|[\[{(]|[\]})]')


def _first_line(text: str) -> int:
    """Line of the first character that is not white space or a comment."""
    rest = re.sub(r"(?://|#)[^\n]*", "", text)
    return rest[:len(rest) - len(rest.lstrip())].count("\n") + 1


def _unclosed(text: str, file: str) -> list[tuple[str, Span]]:
    """Brackets still open at the end of `text` (for 'unexpected end of file')."""
    stack: list[tuple[str, Span]] = []
    for m in _NESTING.finditer(text):
        tok = m.group()
        if tok in "[{(":
            line = text.count("\n", 0, m.start()) + 1
            stack.append((tok, Span(file, line, m.start() - text.rfind("\n", 0, m.start()))))
        elif tok in "]})" and stack:
            stack.pop()
    return stack


def _after_value_hint(text: str, pos: int, file: str) -> str | None:
    """Inside a list or an argument list, right after a value, only ',' or the closing bracket can follow
    (Lark's own 'expected' set there also lists what could follow the enclosing setting)."""
    stack = _unclosed(text[:pos], file)
    before = text[:pos].rstrip()
    if not stack or stack[-1][0] not in "[(" or before[-1:] in ("[", "(", ",", "="):
        return None
    bracket, at = stack[-1]
    what, closer = ("list", "]") if bracket == "[" else ("arguments", ")")
    return f"expected ',' or '{closer}' in the {what} that starts at {at.line}:{at.col}"


def _check_depth(text: str, file: str) -> None:
    """E107: the parser is iterative but the transformer recurses once per level."""
    depth = 0
    for m in _NESTING.finditer(text):
        tok = m.group()
        if tok in "[{(":
            depth += 1
            if depth > MAX_DEPTH:
                line = text.count("\n", 0, m.start()) + 1
                raise NitrogenError([too_deep(Span(file, line, m.start() - text.rfind("\n", 0, m.start())))])
        elif tok in "]})":
            depth -= 1


def parse_dsl(text: str, file: str) -> TNode:
    if not re.sub(r"(?://|#)[^\n]*", "", text).strip():  # nothing but comments and white space
        raise NitrogenError([Diagnostic("E102", "the spec is empty", Span(file, 1, 1),
                                        hint="a spec needs at least: model NAME { input = [C, H, W]  num_classes = N "
                                             "layers { linear(100) } }")])
    try:
        parsed = parser().parse(text)
    except UnexpectedInput as exc:
        raise NitrogenError([_syntax_error(exc, text, file)]) from None
    _check_depth(text, file)
    try:
        return _ToTree(file).transform(parsed)
    except VisitError as exc:  # Lark wraps what a transformer method raises
        if isinstance(exc.orig_exc, NitrogenError):
            raise exc.orig_exc from None
        raise


def _accepted(exc: UnexpectedInput, text: str) -> set[str]:
    """The terminals that can really come at the error. Lark's own `expected` set is the LALR lookahead of
    the state, which also lists what could follow the enclosing rule elsewhere (after `input = [1, 8, 8]`
    it offered ')' and ']'); the interactive parser tries each terminal through its reductions."""
    try:
        if isinstance(exc, UnexpectedToken) and exc.interactive_parser is not None:
            return set(exc.interactive_parser.accepts())
        interactive = parser().parse_interactive(text[:exc.pos_in_stream or 0])
        interactive.exhaust_lexer()
        return set(interactive.accepts())
    except Exception:  # noqa: BLE001 - only a hint: fall back to Lark's set
        return set(getattr(exc, "expected", None) or getattr(exc, "allowed", None) or ())


def _syntax_error(exc: UnexpectedInput, text: str, file: str) -> Diagnostic:
    """E101 for what Lark rejected: at the brace that is really unclosed when the structure shows one, else at
    the error, with what can come there."""
    line, col = max(exc.line, 1), max(exc.column, 1)
    pos = exc.pos_in_stream or 0
    at_end = isinstance(exc, UnexpectedEOF) or (isinstance(exc, UnexpectedToken) and exc.token.type == "$END")
    if at_end:
        lines = text.splitlines() or [""]
        line, col = len(lines), len(lines[-1]) + 1  # just after the last character
    guess = _unclosed_section(text, file)
    if guess is not None and (at_end or guess.line == line):
        where = "the end of the file" if at_end else f"{line}:{col} ('{getattr(exc, 'token', '')}')"
        return Diagnostic("E101", f"DSL syntax error: the '{{' of '{guess.name}' is not closed", guess.brace,
                          (guess.reason, f"the parser noticed only at {where}"),
                          f"add '}}' to close '{guess.name}' before line {guess.line}")
    accepted = _accepted(exc, text)
    hint = f"expected {_describe_expected(accepted)}" if accepted else None
    notes: tuple[str, ...] = ()
    if isinstance(exc, UnexpectedCharacters):
        char = text[pos] if pos < len(text) else ""
        msg = f"unexpected character {char!r}"
        if char == '"':
            msg, hint = "this string is not closed", "close it with '\"' on the same line (a string cannot span lines)"
        elif char == ";" and _after_value_hint(text, pos, file) is None:
            hint = (f"{hint}; " if hint else "") + "the DSL needs no ';' (white space separates settings)"
        elif char == ":" and re.search(r"[A-Za-z_]\w*[ \t]*$", text[:pos]) and line != _first_line(text):
            hint = "the DSL writes 'key = value' (':' is YAML's)"
        else:
            hint = _after_value_hint(text, pos, file) or hint
    elif isinstance(exc, UnexpectedToken) and not at_end:
        msg = f"unexpected '{exc.token}'"
        hint = _after_value_hint(text, pos, file) or hint
    elif at_end:
        msg = "unexpected end of file"
        notes = tuple(f"the '{ch}' at {at.line}:{at.col} is never closed" for ch, at in _unclosed(text, file))
    else:  # pragma: no cover - lark has no other kinds today
        msg = "syntax error"
    if hint and hint.startswith("expected") and re.search(r"^[A-Za-z_]\w*[ \t]*:", text, re.M) \
            and line == _first_line(text):
        hint += "; this looks like YAML, whose files end in .yaml"
    return Diagnostic("E101", f"DSL syntax error: {msg}", Span(file, line, col), notes, hint)


# Tokens for the structure check: strings (closed or not), comments, names, and single characters.
_SCAN = re.compile(r'"(?:[^"\\\n]|\\.)*"?|(?://|#)[^\n]*|[A-Za-z_][A-Za-z0-9_]*|[0-9.][0-9_.eE+-]*|\S')
# The keys a `{ ... }` section takes, by its name; `layers` takes calls, no keys.
_SECTIONS: dict[str, tuple[str, ...]] = {"model": SECTION_KEYS[""], "layers": (), **{
    path.rpartition(".")[2]: keys for path, keys in SECTION_KEYS.items() if path}}


@dataclass(frozen=True, slots=True)
class _Guess:
    brace: Span   # the '{' that is not closed
    name: str     # the section it opens
    line: int     # the line where the section should have ended
    reason: str


@dataclass(slots=True)
class _Open:
    """A bracket still open while scanning; for '{', the section it opens and the indentation of its lines."""

    char: str
    span: Span
    name: str             # 'model', 'layers', 'train', 'plateau', ... ('' for brackets and unknown sections)
    indent: int           # of the line that opens it
    content: int | None = None  # of its first line of content


def _unclosed_section(text: str, file: str) -> _Guess | None:
    """The first `{` whose section visibly ends without its `}`: a key of an enclosing section written inside
    it (`early_stopping` inside `plateau`, `train` inside `layers`), or a later line indented no deeper than
    the line that opens it while its content is indented deeper."""
    starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
    tokens = [m for m in _SCAN.finditer(text) if not m.group().startswith(("//", "#"))]
    stack: list[_Open] = []
    line = 0  # 0-based
    for i, m in enumerate(tokens):
        tok = m.group()
        while line + 1 < len(starts) and starts[line + 1] <= m.start():
            line += 1
        before = text[starts[line]:m.start()]
        col = len(before) + 1
        top = stack[-1] if stack else None
        if top is not None and top.char == "{" and tok != "}":
            following = tokens[i + 1].group() if i + 1 < len(tokens) else ""
            keys = _SECTIONS.get(top.name)
            if tok[0].isalpha() and following in ("=", "{") and keys is not None and tok not in keys:
                outer = next((e.name for e in reversed(stack[:-1]) if e.char == "{" and
                              tok in _SECTIONS.get(e.name, ())), None)
                if outer is not None:
                    inside = "a layer" if top.name == "layers" else f"of '{top.name}'"
                    return _Guess(top.span, top.name, line + 1,
                                  f"'{tok}' at {line + 1}:{col} is a key of '{outer}', not {inside}")
            if not before.strip() and top.span.line < line + 1:  # the first token of a later line
                indent = len(before.expandtabs(8))
                if top.content is None:
                    top.content = indent
                elif top.content > top.indent >= indent:
                    return _Guess(top.span, top.name, line + 1, f"line {line + 1} is indented no deeper than "
                                  f"line {top.span.line}, which opens '{top.name}'")
        if tok in "[{(":
            name = "model" if i >= 2 and tokens[i - 2].group() == "model" else \
                tokens[i - 1].group() if i and tok == "{" else ""
            head = text[starts[line]:m.start()]
            indent = len(head[:len(head) - len(head.lstrip())].expandtabs(8))
            stack.append(_Open(tok, Span(file, line + 1, col), name, indent))
        elif tok in "]})" and stack:
            stack.pop()
    return None


@v_args(meta=True)
class _ToTree(Transformer[Token, TNode]):
    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    def _span(self, meta: object) -> Span:
        return Span(self.file, getattr(meta, "line", 1), getattr(meta, "column", 1))

    def _tok(self, tok: Token) -> Span:
        return Span(self.file, tok.line or 1, tok.column or 1)

    def start(self, meta: object, children: list[object]) -> TMap:
        name_tok = children[0]
        assert isinstance(name_tok, Token)
        name_item = (TKey("name", self._tok(name_tok)), TScalar(str(name_tok), self._tok(name_tok)))
        items = [name_item] + [c for c in children[1:] if isinstance(c, tuple)]
        return TMap(tuple(items), self._span(meta))  # the 'model' keyword

    def setting(self, meta: object, children: list[object]) -> tuple[TKey, TNode]:
        key, value = children
        assert isinstance(key, Token)
        return (TKey(str(key), self._tok(key)), self._scalar(value, str(key)))

    def section(self, meta: object, children: list[object]) -> tuple[TKey, TNode]:
        key = children[0]
        assert isinstance(key, Token)
        return (TKey(str(key), self._tok(key)), TMap(tuple(children[1:]), self._tok(key)))  # type: ignore[arg-type]

    def layers(self, meta: object, children: list[object]) -> tuple[TKey, TNode]:
        span = self._span(meta)
        return (TKey("layers", span), TSeq(tuple(children), span))  # type: ignore[arg-type]

    def layer(self, meta: object, children: list[object]) -> TMap:
        kind = children[0]
        assert isinstance(kind, Token)
        span = self._tok(kind)
        items: list[tuple[TKey, TNode]] = [(TKey("kind", span), TScalar(str(kind), span))]
        positional = [arg for arg in children[1:] if isinstance(arg, Tree)]
        if len(positional) > 1 and str(kind) in PRIMARY_KEY:
            key = PRIMARY_KEY[str(kind)]
            raise NitrogenError([Diagnostic(
                "E101", f"DSL syntax error: {kind}() takes one positional argument ({key}), got {len(positional)}",
                positional[1].children[0].span,  # type: ignore[union-attr]
                hint=f"name the others, as in {kind}(..., slope_inv=4)")])
        for arg in children[1:]:
            if arg is None:
                continue
            if isinstance(arg, Tree):  # positional: the kind's main size
                key = PRIMARY_KEY.get(str(kind), "_positional")
                value = self._scalar(arg.children[0], key)
                items.append((TKey(key, value.span), value))
            else:
                items.append(arg)  # type: ignore[arg-type]
        return TMap(tuple(items), span)

    def positional(self, meta: object, children: list[object]) -> Tree:
        return Tree("positional", children)

    def named(self, meta: object, children: list[object]) -> tuple[TKey, TNode]:
        key, value = children
        assert isinstance(key, Token)
        return (TKey(str(key), self._tok(key)), self._scalar(value, str(key)))

    def float(self, meta: object, children: list[Token]) -> _Float:
        return _Float(str(children[0]), self._tok(children[0]))

    def _scalar(self, value: object, key: str | None) -> TNode:
        """`value`, or E105 for a fraction (with the key's hint, as the YAML front end gives it)."""
        if isinstance(value, _Float):
            raise NitrogenError([Diagnostic("E105", f"unsupported value '{value.text}' (a float)", value.span,
                                            hint=float_hint(key, value.text))])
        return value  # type: ignore[return-value]

    def integer(self, meta: object, children: list[Token]) -> TScalar:
        if len(children[0]) > MAX_INT_CHARS:  # int() refuses over 4300 digits; no key accepts 21
            raise NitrogenError([long_integer(str(children[0]), self._tok(children[0]))])
        return TScalar(int(children[0].replace("_", "")), self._tok(children[0]))

    def word(self, meta: object, children: list[Token]) -> TScalar:
        text = str(children[0])
        value: bool | str | None = {"true": True, "false": False, "null": None}.get(text, text) \
            if text in ("true", "false", "null") else text
        return TScalar(value, self._tok(children[0]))

    def string(self, meta: object, children: list[Token]) -> TScalar:
        """JSON string escapes (\\n, \\", \\uXXXX, ...): the grammar's ESCAPED_STRING is JSON's string syntax."""
        tok = children[0]
        try:
            value = json.loads(tok)
        except json.JSONDecodeError as exc:
            what = f"escape '{tok[exc.pos:exc.pos + 2]}'" if "escape" in exc.msg else "control character"
            raise NitrogenError([Diagnostic(
                "E101", f"DSL syntax error: invalid {what} in a string", Span(self.file, tok.line or 1,
                                                                            (tok.column or 1) + exc.pos),
                hint='strings take the escapes \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX')]) from None
        return TScalar(value, self._tok(tok))

    def list(self, meta: object, children: list[object]) -> TSeq:
        return TSeq(tuple(self._scalar(c, None) for c in children if c is not None), self._span(meta))


@dataclass(frozen=True, slots=True)
class _Float:
    """A fractional number, until the key it was written for is known (the transformer works bottom up)."""

    text: str
    span: Span
