"""YAML surface syntax -> neutral tree. The only module that imports `yaml`.

Uses `yaml.compose` with the safe loader (never `yaml.load`), so every node keeps its
position; PyYAML marks are 0-based, spans are 1-based.
"""

from __future__ import annotations

import yaml

from .errors import Diagnostic, NitrogenError, Span
from .tree import TKey, TMap, TNode, TScalar, TSeq

_SCALAR_TAGS = {
    "tag:yaml.org,2002:int", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:str", "tag:yaml.org,2002:null",
}


def _span(file: str, node: yaml.Node) -> Span:
    return Span(file, node.start_mark.line + 1, node.start_mark.column + 1)


def parse_yaml(text: str, file: str) -> TNode:
    """Parse YAML text into a tree, or raise NitrogenError (E101) at the first syntax error."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        span = Span(file, mark.line + 1, mark.column + 1) if mark else Span(file, 1, 1)
        raise NitrogenError([Diagnostic("E101", f"YAML syntax error: {exc.problem or exc.context}", span)]) from None
    except yaml.YAMLError as exc:
        raise NitrogenError([Diagnostic("E101", f"YAML syntax error: {exc}", Span(file, 1, 1))]) from None
    if root is None:
        raise NitrogenError([Diagnostic("E102", "the spec is empty", Span(file, 1, 1),
                                        hint="a spec needs at least 'name', 'input' and 'num_classes'")])
    constructor = yaml.SafeLoader("")
    budget = [100_000]  # nodes; aliases are expanded, so this stops alias bombs

    def convert(node: yaml.Node) -> TNode:
        budget[0] -= 1
        if budget[0] < 0:
            raise NitrogenError([Diagnostic("E103", "the spec expands to more than 100000 nodes",
                                            _span(file, node), hint="remove repeated YAML aliases")])
        span = _span(file, node)
        if isinstance(node, yaml.MappingNode):
            items = []
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag != "tag:yaml.org,2002:str":
                    raise NitrogenError([Diagnostic("E104", "mapping keys must be plain names", _span(file, key))])
                items.append((TKey(key.value, _span(file, key)), convert(value)))
            return TMap(tuple(items), span)
        if isinstance(node, yaml.SequenceNode):
            return TSeq(tuple(convert(item) for item in node.value), span)
        if node.tag not in _SCALAR_TAGS:
            kind = node.tag.rsplit(":", 1)[-1]
            raise NitrogenError([Diagnostic("E105", f"unsupported YAML value '{node.value}' ({kind})", span,
                                            hint="spec values are integers, names, true/false, lists and mappings")])
        return TScalar(constructor.construct_object(node), span)

    return convert(root)
