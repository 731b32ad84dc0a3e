"""YAML surface syntax -> neutral tree. The only module that imports `yaml`.

Uses `yaml.compose` with the safe loader (never `yaml.load`), so every node keeps its
position; PyYAML marks are 0-based, spans are 1-based.
"""

from __future__ import annotations

from dataclasses import replace

import yaml

from .errors import YAML_BREAKS, Diagnostic, NitrogenError, Span
from .tree import MAX_DEPTH, MAX_INT_CHARS, TKey, TMap, TNode, TScalar, TSeq, long_integer, too_deep

_SCALAR_TAGS = {
    "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:str", "tag:yaml.org,2002:null",
}
_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
# Hints for PyYAML's most common complaints about hand-written specs.
_HINTS = {
    "mapping values are not allowed here": "check this line's indentation against the keys above it, or quote a "
                                           "value that contains ': '",
    "found character '\\t' that cannot start any token": "YAML indents with spaces, never tabs",
}


def _span(file: str, node: yaml.Node) -> Span:
    return Span(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _check_depth(text: str, file: str) -> None:
    """E107 before composing: PyYAML's composer recurses once per level (the event parser does not)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise NitrogenError([too_deep(Span(file, event.start_mark.line + 1, event.start_mark.column + 1))])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


_KINDS = {"int": "an integer", "bool": "a boolean", "null": "null", "float": "a float", "timestamp": "a date"}


def _kind(tag: str) -> str:
    """'tag:yaml.org,2002:float' -> 'a float'; other tags as written ('!!python/object:x', '!local')."""
    short = tag.removeprefix("tag:yaml.org,2002:")
    return _KINDS.get(short, f"!!{short}" if short != tag else tag)


def _key_problem(key: yaml.Node) -> tuple[str, str]:
    """Message and hint of E104 for a mapping key that is not a plain name."""
    if key.tag == "tag:yaml.org,2002:merge":
        return "YAML merge keys ('<<') are not supported", "write the keys out (an alias of a whole value works)"
    if isinstance(key, yaml.ScalarNode):
        return (f"mapping key '{key.value}' is read as {_kind(key.tag)}, not as a name",
                "keys are names such as num_classes (YAML 1.1 reads yes, no, on, off and numbers as values)")
    what = "a list" if isinstance(key, yaml.SequenceNode) else "a mapping"
    return f"a mapping key is {what}, not a name", "keys are names such as num_classes"


def parse_yaml(text: str, file: str) -> TNode:
    """Parse YAML text into a tree, or raise NitrogenError (E101) at the first syntax error."""
    try:
        _check_depth(text, file)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        span = Span(file, mark.line + 1, mark.column + 1) if mark else Span(file, 1, 1)
        where = exc.context_mark
        problem, hint = exc.problem or exc.context, _HINTS.get(exc.problem or "")
        notes: tuple[str, ...] = ()
        if problem == "but found another document":
            problem = "a second document starts here"
            hint = "a spec is one YAML document: remove the '---' and the rest"
        elif "<stream end>" in problem and where and (exc.context or "").startswith("while parsing a flow "):
            # The end of the file is no place to look: point at the bracket that was never closed.
            what = (exc.context or "").removeprefix("while parsing a ")
            notes, problem = (f"{problem} at the end of the file",), f"this {what} is never closed"
            span = Span(file, where.line + 1, where.column + 1)
        elif exc.problem and exc.context and exc.context.startswith("while ") and where:
            notes = (f"{exc.context} that starts at {where.line + 1}:{where.column + 1}",)
        raise NitrogenError([Diagnostic("E101", f"YAML syntax error: {problem}", span, notes, hint)]) from None
    except yaml.reader.ReaderError as exc:  # a control character; not a MarkedYAMLError, it has a stream offset
        lines = YAML_BREAKS.split(text[:exc.position])  # as PyYAML numbers lines
        span = Span(file, len(lines), len(lines[-1]) + 1)
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise NitrogenError([Diagnostic("E101", f"YAML syntax error: control character U+{char:04X} is not allowed",
                                        span, hint="YAML allows tabs and line breaks, no other control characters")]) \
            from None
    except yaml.YAMLError as exc:
        raise NitrogenError([Diagnostic("E101", f"YAML syntax error: {exc}", Span(file, 1, 1))]) from None
    if root is None:
        raise NitrogenError([Diagnostic("E102", "the spec is empty", Span(file, 1, 1),
                                        hint="a spec needs at least 'name', 'input', 'num_classes' and 'layers'")])
    constructor = yaml.SafeLoader("")
    budget = [100_000]  # nodes; aliases are expanded, so this stops alias bombs
    where = [root]  # the top-level key being converted: a bomb is reported there, not at some shared node

    def convert(node: yaml.Node, depth: int) -> TNode:
        budget[0] -= 1
        if budget[0] < 0:
            top = where[0]
            named = f" by the time '{top.value}' is read" if top is not root else ""
            raise NitrogenError([Diagnostic("E103", f"the spec expands to more than 100000 nodes{named}",
                                            _span(file, top), notes=("YAML aliases (*name) repeat whole values, "
                                                                     "so nested aliases grow exponentially",),
                                            hint="remove repeated YAML aliases; a real spec has a few hundred nodes")])
        if depth > MAX_DEPTH:  # the text passed _check_depth, so aliases did this: report at the top-level key
            deep = too_deep(_span(file, where[0]))
            raise NitrogenError([replace(deep, notes=("YAML aliases (*name) nest a value inside a copy of another",))])
        span = _span(file, node)
        if node.tag not in _SCALAR_TAGS | _COLLECTION_TAGS:
            value = f"'{node.value}' " if isinstance(node, yaml.ScalarNode) else ""
            raise NitrogenError([Diagnostic("E105", f"unsupported YAML value {value}({_kind(node.tag)})", span,
                                            hint="nitrogen is integer-only: spec values are integers, names, "
                                                 "true/false, lists and mappings, without tags")])
        if isinstance(node, yaml.MappingNode):
            items = []
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag != "tag:yaml.org,2002:str":
                    message, hint = _key_problem(key)
                    raise NitrogenError([Diagnostic("E104", message, _span(file, key), hint=hint)])
                if depth == 1:
                    where[0] = key
                items.append((TKey(key.value, _span(file, key)), convert(value, depth + 1)))
            return TMap(tuple(items), span)
        if isinstance(node, yaml.SequenceNode):
            return TSeq(tuple(convert(item, depth + 1) for item in node.value), span)
        if node.tag == "tag:yaml.org,2002:int" and len(node.value) > MAX_INT_CHARS:
            raise NitrogenError([long_integer(node.value, span)])
        try:
            value = constructor.construct_object(node)
        except ValueError:  # YAML 1.1 resolves '0b_' and '0x_' as ints with no digits; PyYAML's int('') fails
            raise NitrogenError([Diagnostic("E105", f"unsupported YAML value '{node.value}' (an integer without "
                                            "digits)", span, hint="write integers in decimal, e.g. 64")]) from None
        # YAML 1.1 reads on/off/yes/no/y/n as booleans; keep the text so a diagnostic can say what was written.
        text = node.value if isinstance(value, bool) and node.value.lower() not in ("true", "false") else None
        return TScalar(value, span, text)

    return convert(root, 1)

