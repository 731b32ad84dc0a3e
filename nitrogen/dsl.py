"""DSL surface syntax -> neutral tree. The only module that imports `lark`.

The grammar (`grammar.lark`) mirrors the YAML keys one to one: `key = value` for a scalar
or list, `key { ... }` for a mapping, and `layers { kind(args) ... }` for the layer list,
where a single positional argument stands for the kind's main size (`linear(100)`).
"""

from __future__ import annotations

import json
import re

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from .errors import Diagnostic, NitrogenError, Span
from .spec import PRIMARY_KEY
from .tree import MAX_DEPTH, MAX_INT_CHARS, TKey, TMap, TNode, TScalar, TSeq, long_integer, too_deep

# `strict=True` (grammar conflicts as errors) needs the optional `interegular` package; the tests load
# the grammar that way once, so the run-time parser does not need it.
_PARSER = Lark.open("grammar.lark", rel_to=__file__, parser="lalr", propagate_positions=True)

_TOKEN_NAMES = {"LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
                "EQUAL": "'='", "COMMA": "','", "NAME": "a name", "INT": "an integer",
                "ESCAPED_STRING": "a string", "MODEL": "'model'", "LAYERS": "'layers'", "$END": "end of file"}


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TOKEN_NAMES.get(e, e) for e in expected})
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
        parsed = _PARSER.parse(text)
    except UnexpectedInput as exc:
        line, col = max(exc.line, 1), max(exc.column, 1)
        if isinstance(exc, UnexpectedCharacters):
            msg = f"unexpected character {text[exc.pos_in_stream or 0]!r}"
        elif isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
            msg = f"unexpected '{exc.token}'"
        elif isinstance(exc, (UnexpectedEOF, UnexpectedToken)):
            msg = "unexpected end of file"
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1  # just after the last character
        else:  # pragma: no cover - lark has no other kinds today
            msg = "syntax error"
        expected = getattr(exc, "expected", None) or getattr(exc, "allowed", None)
        hint = f"expected {_describe_expected(set(expected))}" if expected else None
        if isinstance(exc, UnexpectedCharacters):
            hint = _after_value_hint(text, exc.pos_in_stream or 0, file) or hint
        if hint and re.search(r"^[A-Za-z_]\w*[ \t]*:", text, re.M) and line == _first_line(text):
            hint += "; this looks like YAML, whose files end in .yaml"
        notes = tuple(f"the '{ch}' at {at.line}:{at.col} is never closed" for ch, at in _unclosed(text, file)) \
            if msg == "unexpected end of file" else ()
        raise NitrogenError([Diagnostic("E101", f"DSL syntax error: {msg}", Span(file, line, col), notes, hint)]) \
            from None
    _check_depth(text, file)
    try:
        return _ToTree(file).transform(parsed)
    except VisitError as exc:  # Lark wraps what a transformer method raises
        if isinstance(exc.orig_exc, NitrogenError):
            raise exc.orig_exc from None
        raise


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
        return (TKey(str(key), self._tok(key)), value)  # type: ignore[return-value]

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
                value = arg.children[0]
                key = PRIMARY_KEY.get(str(kind), "_positional")
                items.append((TKey(key, value.span), value))  # type: ignore[union-attr, arg-type]
            else:
                items.append(arg)  # type: ignore[arg-type]
        return TMap(tuple(items), span)

    def positional(self, meta: object, children: list[object]) -> Tree:
        return Tree("positional", children)

    def named(self, meta: object, children: list[object]) -> tuple[TKey, TNode]:
        key, value = children
        assert isinstance(key, Token)
        return (TKey(str(key), self._tok(key)), value)  # type: ignore[return-value]

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
        return TSeq(tuple(c for c in children if c is not None), self._span(meta))  # type: ignore[misc]
