"""DSL surface syntax -> neutral tree. The only module that imports `lark`.

The grammar (`grammar.lark`) mirrors the YAML keys one to one: `key = value` for a scalar
or list, `key { ... }` for a mapping, and `layers { kind(args) ... }` for the layer list,
where a single positional argument stands for the kind's main size (`linear(100)`).
"""

from __future__ import annotations

import ast

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .errors import Diagnostic, NitrogenError, Span
from .spec import PRIMARY_KEY
from .tree import TKey, TMap, TNode, TScalar, TSeq

# `strict=True` (grammar conflicts as errors) needs the optional `interegular` package; the tests load
# the grammar that way once, so the run-time parser does not need it.
_PARSER = Lark.open("grammar.lark", rel_to=__file__, parser="lalr", propagate_positions=True)

_TOKEN_NAMES = {"LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'",
                "EQUAL": "'='", "COMMA": "','", "NAME": "a name", "INT": "an integer",
                "ESCAPED_STRING": "a string", "MODEL": "'model'", "LAYERS": "'layers'", "$END": "end of file"}


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_TOKEN_NAMES.get(e, e) for e in expected})
    return ", ".join(names)


def parse_dsl(text: str, file: str) -> TNode:
    try:
        parsed = _PARSER.parse(text)
    except UnexpectedInput as exc:
        line, col = max(exc.line, 1), max(exc.column, 1)
        if isinstance(exc, UnexpectedCharacters):
            msg = f"unexpected character {text[exc.pos_in_stream or 0]!r}"
        elif isinstance(exc, UnexpectedEOF):
            msg = "unexpected end of file"
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
        elif isinstance(exc, UnexpectedToken):
            msg = "unexpected end of file" if exc.token.type == "$END" else f"unexpected '{exc.token}'"
        else:  # pragma: no cover - lark has no other kinds today
            msg = "syntax error"
        expected = getattr(exc, "expected", None) or getattr(exc, "allowed", None)
        hint = f"expected {_describe_expected(set(expected))}" if expected else None
        raise NitrogenError([Diagnostic("E101", f"DSL syntax error: {msg}", Span(file, line, col), hint=hint)]) \
            from None
    return _ToTree(file).transform(parsed)


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
        return TMap(tuple(items), Span(self.file, 1, 1))

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
        return TScalar(int(children[0].replace("_", "")), self._tok(children[0]))

    def word(self, meta: object, children: list[Token]) -> TScalar:
        text = str(children[0])
        value: bool | str | None = {"true": True, "false": False, "null": None}.get(text, text) \
            if text in ("true", "false", "null") else text
        return TScalar(value, self._tok(children[0]))

    def string(self, meta: object, children: list[Token]) -> TScalar:
        return TScalar(ast.literal_eval(children[0]), self._tok(children[0]))

    def list(self, meta: object, children: list[object]) -> TSeq:
        return TSeq(tuple(c for c in children if c is not None), self._span(meta))  # type: ignore[misc]
