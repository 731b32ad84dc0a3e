"""YAML surface syntax -> neutral tree. The only module that imports `yaml`.

Uses `yaml.compose` with the safe loader (never `yaml.load`), so every node keeps its
position; PyYAML marks are 0-based, spans are 1-based.
"""

from __future__ import annotations

import re
from dataclasses import replace

import yaml

from .errors import YAML_BREAKS, Diagnostic, NitrogenError, Span
from .hints import NO_SPACE, float_hint
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


# PyYAML's token names, as a user would say them.
_TOKENS = {"<block mapping start>": "a key", "?": "a key", "<block sequence start>": "a list item ('- ')",
           "<scalar>": "a value", "<block end>": "the end of the block", "-": "a list item ('- ')"}
# Indentation and the start of a `- ` list item on one line.
_LINE_START = re.compile(r"( *)(?:(-)( +|$))?")


def _no_space_after_colon(lines: list[str], exc: yaml.MarkedYAMLError) -> tuple[tuple[int, int], str, str] | None:
    """Where a `key:value` without a space is, when it explains PyYAML's complaint. YAML reads `lr_inv:64`
    as one plain word, which may continue on the next lines; the error comes where that word ends (at the
    next `key: value`, or at the end of the file), so look back from there over the word's lines."""
    mark = exc.problem_mark
    if mark is None:
        return None
    if exc.problem == "could not find expected ':'" and exc.context_mark is not None:
        candidates = [exc.context_mark.line]  # the simple key's first line
    elif exc.problem == "mapping values are not allowed here":
        candidates = []
        for number in range(mark.line - 1, -1, -1):  # the lines of the multi-line plain word, bottom up
            text = lines[number] if number < len(lines) else ""
            body = text.split(" #", 1)[0].strip()
            if not body or body.startswith("#") or ": " in body or body.endswith(":"):
                break
            candidates.append(number)
        candidates.reverse()
    else:
        return None
    for number in candidates:
        text = lines[number] if number < len(lines) else ""
        start = _LINE_START.match(text)
        body = text[start.end():] if start else text
        m = NO_SPACE.match(body)
        if m is not None:  # ((line, col) of the colon, key, value)
            return (number + 1, (start.end() if start else 0) + m.end(1) + 1), m.group(1), m.group(2)
    return None


def _indentation_problem(lines: list[str], exc: yaml.MarkedYAMLError) -> tuple[str, str, str] | None:
    """PyYAML's "expected <block end>, but found ..." as (message, note, hint): a line whose indentation
    matches no block above it, said with the columns that would fit."""
    mark, where = exc.problem_mark, exc.context_mark
    problem = exc.problem or ""
    if mark is None or where is None or not problem.startswith("expected <block end>, but found "):
        return None
    found = problem.removeprefix("expected <block end>, but found ").strip("'")
    what = _TOKENS.get(found, f"'{found}'")
    col = mark.column + 1
    # The columns the lines of the enclosing block start at: keys and '- ' of each line, and the keys of
    # list items (after '- ').
    columns: set[int] = set()
    dashes: set[int] = set()
    item_keys: dict[int, int] = {}  # '-' column -> column of the item's keys
    item_line: dict[int, int] = {}  # '-' column -> line of the last item there
    for number in range(where.line, min(mark.line, len(lines))):
        text = lines[number]
        body = text.lstrip(" ")
        if not body or body.startswith("#"):
            continue
        start = _LINE_START.match(text)
        indent = len(start.group(1)) + 1 if start else 1
        columns.add(indent)
        if start and start.group(2):
            dashes.add(indent)
            item_keys[indent] = start.end() + 1
            item_line[indent] = number + 1
            columns.add(start.end() + 1)
    if not columns:
        return None
    shown = " or ".join(map(str, sorted(columns)))
    lines_above = f"line {mark.line} starts" if where.line + 1 == mark.line else \
        f"the lines from {where.line + 1} to {mark.line} start"
    note = f"{lines_above} at column {shown}"
    dash = max((d for d in dashes if d <= col), default=None)
    if found in ("<block mapping start>", "?") and dash is not None and item_keys[dash] != col:
        keys = item_keys[dash]
        note = f"the list item at line {item_line[dash]} has its '- ' at column {dash} and its keys at column {keys}"
        return (f"this key is at column {col}, but the keys of the list item above are at column {keys}",
                note, f"indent it to column {keys} to continue the item, or start a new item with '- ' at "
                      f"column {dash}")
    if found in ("<block sequence start>", "-") and dashes:
        first = min(dashes, key=lambda d: abs(d - col))
        return (f"this list item is at column {col}, but the items of its list are at column {first}",
                note, f"put every '- ' of one list at the same column ({first})")
    fits = sorted(c for c in columns if c != col)
    return (f"{what} at column {col} does not line up with the block it belongs to", note,
            f"YAML nests by indentation: start it at the column of the keys it belongs with "
            f"({', '.join(map(str, fits))})")


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
        lines = YAML_BREAKS.split(text)
        colon = _no_space_after_colon(lines, exc)
        indentation = _indentation_problem(lines, exc)
        if colon is not None:
            (line, col), key, value = colon
            problem, span, notes = f"no space after the colon of '{key}'", Span(file, line, col), ()
            hint = f"put a space after the colon: '{key}: {value}' (YAML reads '{key}:{value}' as one word)"
        elif indentation is not None:
            problem, note, hint = indentation
            notes = (note,)
        elif problem == "but found another document":
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

    def convert(node: yaml.Node, depth: int, key_name: str | None = None) -> TNode:
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
            hint = float_hint(key_name, node.value) if node.tag == "tag:yaml.org,2002:float" else \
                "nitrogen is integer-only: spec values are integers, names, true/false, lists and mappings, " \
                "without tags"
            raise NitrogenError([Diagnostic("E105", f"unsupported YAML value {value}({_kind(node.tag)})", span,
                                            hint=hint)])
        if isinstance(node, yaml.MappingNode):
            items = []
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag != "tag:yaml.org,2002:str":
                    message, hint = _key_problem(key)
                    raise NitrogenError([Diagnostic("E104", message, _span(file, key), hint=hint)])
                if depth == 1:
                    where[0] = key
                items.append((TKey(key.value, _span(file, key)), convert(value, depth + 1, key.value)))
            return TMap(tuple(items), span)
        if isinstance(node, yaml.SequenceNode):
            return TSeq(tuple(convert(item, depth + 1, key_name) for item in node.value), span)
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

