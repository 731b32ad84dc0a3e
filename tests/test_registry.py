"""Closed sets and their parallel registries agree: every layer kind has a lowering rule and a reference
implementation, every op kind has a bounds rule, a view and a template; the reference stays independent."""

from __future__ import annotations

import ast
from pathlib import Path

from nitrogen import reference
from nitrogen.bounds import BOUNDS
from nitrogen.emit import VIEWS
from nitrogen.ir import ARITY, OpKind
from nitrogen.lower import LOWER
from nitrogen.spec import LAYER_BUILDERS, LAYER_KINDS, PRIMARY_KEY

from conftest import ROOT


def test_layer_kinds() -> None:
    assert set(LAYER_KINDS) == set(LOWER) == set(reference.REFERENCE) == set(LAYER_BUILDERS) == set(PRIMARY_KEY)


def test_op_kinds() -> None:
    stems = {p.name.removesuffix(".c.j2") for p in (ROOT / "templates" / "ops").glob("*.c.j2")}
    assert set(OpKind) == set(BOUNDS) == set(VIEWS) == set(ARITY)
    assert {k.value for k in OpKind} == stems


def test_reference_is_independent_of_the_c_path() -> None:
    tree = ast.parse(Path(reference.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add(("." * node.level) + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    forbidden = {"lower", "ir", "bounds", "emit", "layout", "pipeline", "verify"}
    for name in imported:
        assert name.rsplit(".", 1)[-1] not in forbidden, name


def test_one_module_owns_each_third_party_library() -> None:
    owners = {"yaml": {"yaml_front.py"}, "lark": {"dsl.py"}, "jinja2": {"emit.py"}, "matplotlib": {"plot.py"},
              "tqdm": {"train.py"},
              # NumPy is the array type of the host side: reference, data, preprocessing, driver; never the compiler.
              "numpy": {"reference.py", "verify.py", "data.py", "preprocess.py", "native.py", "train.py",
                        "firmware.py", "checkpoint.py"}}
    for path in (ROOT / "nitrogen").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top in owners:
                    assert path.name in owners[top], f"{path.name} imports {top}"
