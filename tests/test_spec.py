"""Spec parsing: defaults, spans, YAML and DSL agreement, diagnostics with positions."""

from __future__ import annotations

import pytest

import nitrogen
from nitrogen.errors import NitrogenError
from nitrogen.spec import Semantics

from conftest import SPECS, load, spec_from_text

MINIMAL = "name: m\ninput: [1, 2, 2]\nnum_classes: 3\nlayers: [{kind: linear, out_features: 4}]\n"


def test_paper_defaults() -> None:
    m = spec_from_text(MINIMAL)
    assert m.target_value == 32
    assert m.semantics is Semantics.NITROGEN
    assert m.weight_bits == 16
    assert m.layers[0].slope_inv == 4
    t = m.train
    assert (t.batch_size, t.lr_inv, t.amp_model, t.epochs) == (64, 512, 64 * 3, 150)
    assert (t.plateau.factor, t.plateau.patience, t.plateau.from_epoch, t.plateau.min_delta_pct) == (3, 15, 10, 1)
    assert (t.early_stopping.patience, t.early_stopping.from_epoch) == (35, 30)
    assert m.init.scheme == "kaiming_uniform"


def test_paper_mlp_hyperparameters() -> None:
    m = load("mlp1_mnist.yaml")
    assert [b.out_features for b in m.layers] == [100, 50]
    assert (m.train.fwd_decay_inv, m.train.subnet_decay_inv, m.train.amp_model) == (12000, 3000, 640)
    m3 = load("mlp3_mnist.yaml")
    assert (m3.train.fwd_decay_inv, m3.train.subnet_decay_inv, m3.train.augment.crop_pad) == (28000, 500, 2)
    m4 = load("mlp4_cifar10.yaml")
    assert m4.input_shape == (3, 32, 32) and m4.train.augment.flip


@pytest.mark.parametrize("name", ["mlp1_mnist", "mlp2_fmnist", "tiny_mlp"])
def test_yaml_and_dsl_build_the_same_model(name: str) -> None:
    a, b = load(f"{name}.yaml"), load(f"{name}.ng")
    assert a.canonical() == b.canonical()
    assert a.sha256 == b.sha256


def test_spans_point_at_the_written_key() -> None:
    m = load("mlp1_mnist.yaml")
    assert (m.span("train.fwd_decay_inv").line, m.span("train.fwd_decay_inv").col) == (15, 3)
    assert m.span("layers[1]").line == 10
    d = load("mlp1_mnist.ng")
    assert d.span("layers[1]").line == 10 and d.span("layers[1]").file.endswith(".ng")


def _errors(text: str, file: str = "t.yaml") -> list[str]:
    with pytest.raises(NitrogenError) as exc:
        nitrogen.parse_spec_text(text, file)
    return [f"{d.span.line}:{d.span.col} {d.code} {d.message}" for d in exc.value.diagnostics]


def test_unknown_key_has_position_and_suggestion() -> None:
    with pytest.raises(NitrogenError) as exc:
        nitrogen.parse_spec_text(MINIMAL + "trian: {}\n", "t.yaml")
    (d,) = exc.value.diagnostics
    assert (d.code, d.span.line, d.span.col) == ("E201", 5, 1)
    assert "did you mean 'train'" in (d.hint or "")


def test_all_problems_are_collected() -> None:
    errs = _errors("name: 1bad\ninput: [1, 0, 2]\nnum_classes: 300\nlayers: [{kind: lineer}]\n")
    assert [e.split()[1] for e in errs] == ["E208", "E206", "E206", "E207"]
    assert errs[0].startswith("1:7")


def test_wrong_type_and_missing_key() -> None:
    errs = _errors("name: m\ninput: [1, 2, 2]\nnum_classes: ten\nlayers: [{kind: linear}]\n")
    assert errs == ["3:14 E205 'num_classes' must be an integer, got 'ten'",
                    "4:10 E204 missing required key 'layers[0].out_features'"]


def test_dropout_is_rejected_until_cnn_support() -> None:
    errs = _errors(MINIMAL.replace("layers: [", "layers: [{kind: dropout, pct: 10}, "))
    assert errs[0].split()[1] == "E209" and "not supported yet" in errs[0]


def test_c_keyword_name_and_empty_file() -> None:
    assert _errors(MINIMAL.replace("name: m", "name: int"))[0].split()[1] == "E208"
    assert _errors("")[0].split()[1] == "E102"


def test_yaml_syntax_error_position() -> None:
    errs = _errors("name: m\ninput: [1, 2\n")
    assert errs[0].split()[1] == "E101"


def test_dsl_syntax_error_position() -> None:
    errs = _errors("model m {\n  input = [1, 2, 2]\n  num_classes = = 3\n}\n", "t.ng")
    assert errs[0].startswith("3:17 E101")


def test_yaml_alias_bomb_is_refused() -> None:
    bomb = "a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh"))
    errs = _errors(bomb)
    assert errs[0].split()[1] == "E103"


def test_every_spec_in_specs_loads() -> None:
    for path in sorted(SPECS.iterdir()):
        nitrogen.load_spec(path)


def test_grammar_has_no_conflicts() -> None:
    """Lark's strict mode turns shift/reduce conflicts and terminal collisions into errors."""
    from lark import Lark

    import nitrogen.dsl

    Lark.open("grammar.lark", rel_to=nitrogen.dsl.__file__, parser="lalr", strict=True)
