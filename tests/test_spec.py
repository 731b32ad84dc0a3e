"""Spec parsing: defaults, spans, YAML and DSL agreement, diagnostics with positions."""

from __future__ import annotations

import pytest

import nitrogen
from nitrogen.errors import NitrogenError
from nitrogen.spec import Semantics, lint, with_semantics

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


@pytest.mark.parametrize("name", ["mlp1_mnist", "mlp2_fmnist", "tiny_mlp", "tiny_cnn"])
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


CNN = ("name: m\ninput: [1, 6, 6]\nnum_classes: 3\nlayers:\n"
       "  - {kind: conv, out_channels: 4}\n"
       "  - {kind: maxpool, kernel: 2}\n"
       "  - {kind: linear, out_features: 5}\n")


def test_cnn_defaults_and_dsl_twin() -> None:
    m = spec_from_text(CNN)
    conv = m.layers[0]
    assert (conv.kind, conv.kernel, conv.padding, conv.slope_inv, conv.decoder_dim, conv.learning_pool) == \
        ("conv", 3, 1, 4, 4096, "max")
    assert m.train.conv_amp_adjust is False and m.has_conv and len(m.blocks) == 2
    dsl = ("model m {\n  input = [1, 6, 6]\n  num_classes = 3\n"
           "  layers { conv(4) maxpool(2) linear(5) }\n}\n")
    assert spec_from_text(dsl, "t.ng").sha256 == m.sha256


def test_dropout_takes_a_whole_percentage() -> None:
    errs = _errors(MINIMAL.replace("layers: [", "layers: [{kind: dropout, pct: 10}, "))
    assert [e.split()[1] for e in errs] == ["E201", "E204"]
    errs = _errors(MINIMAL.replace("layers: [", "layers: [{kind: dropout, rate_pct: 100}, "))
    assert errs[0].split()[1] == "E206" and "outside [1, 99]" in errs[0]


@pytest.mark.parametrize("layers, code, where", [
    ("[{kind: linear, out_features: 5}, {kind: conv, out_channels: 2}]", "E214", "4:43"),
    ("[{kind: linear, out_features: 5}, {kind: maxpool}]", "E214", "4:43"),
    ("[{kind: conv, out_channels: 2, kernel: 9, padding: 0}]", "E216", "4:10"),
    ("[{kind: maxpool, kernel: 7}, {kind: linear, out_features: 5}]", "E216", "4:10"),
    ("[{kind: conv, out_channels: 2, kernel: 3, padding: 3}]", "E206", "4:60"),
])
def test_shapes_that_do_not_fit(layers: str, code: str, where: str) -> None:
    errs = _errors(f"name: m\ninput: [1, 6, 6]\nnum_classes: 3\nlayers: {layers}\n")
    assert len(errs) == 1 and errs[0].split()[1] == code and errs[0].startswith(where), errs


def test_conv_needs_a_square_input() -> None:
    errs = _errors("name: m\ninput: [1, 6, 5]\nnum_classes: 3\nlayers: [{kind: conv, out_channels: 2}]\n")
    assert errs[0].split()[1] == "E215"


def test_reference_mode_rejects_nitrogen_only_options() -> None:
    base = "name: m\ninput: [1, 7, 7]\nnum_classes: 3\nsemantics: reference\ndecoder_dim: 20\n"
    errs = _errors(base + "learning_pool: avg\nlayers: [{kind: conv, out_channels: 2}]\n")
    assert errs[0].split()[1] == "E217" and "average learning pool with padding" in errs[0]
    errs = _errors(base + "layers: [{kind: conv, out_channels: 2}, {kind: dropout, rate_pct: 12}]\n")
    assert errs[0].split()[1] == "E217" and "multiple of 5" in errs[0]
    errs = _errors(base + "layers: [{kind: conv, out_channels: 2}]\ntrain: {conv_amp_adjust: true}\n")
    assert errs[0].split()[1] == "E217" and errs[0].startswith("7:9")
    # The CLI's --semantics override re-runs the same checks.
    with pytest.raises(NitrogenError) as info:
        with_semantics(load("tiny_cnn_adjust.yaml"), "reference")
    assert {d.code for d in info.value.diagnostics} == {"E217"}


def test_opt_in_amplification_that_would_be_zero() -> None:
    # 64 channels at 3x3 with decoder_dim 32: learning pool (4, 4) and 9 // 16 = 0 would make A = 0.
    errs = _errors("name: m\ninput: [1, 3, 3]\nnum_classes: 3\ndecoder_dim: 32\n"
                   "layers: [{kind: conv, out_channels: 64}]\ntrain: {conv_amp_adjust: true}\n")
    assert errs[0].split()[1] == "E218" and errs[0].startswith("5:10")


def test_lint_warns_about_dropped_rows_and_unreachable_decoder_dims() -> None:
    warnings = lint(load("vgg8b_mnist.yaml"))
    assert [(w.code, w.span.line) for w in warnings] == [("W202", 18), ("W202", 20)]
    m = spec_from_text("name: m\ninput: [1, 2, 2]\nnum_classes: 3\ndecoder_dim: 8\n"
                       "layers: [{kind: conv, out_channels: 16}]\n")
    (w,) = lint(m)
    assert w.code == "W203" and "fan-in 16" in w.message


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
