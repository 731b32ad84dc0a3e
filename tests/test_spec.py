"""Spec parsing: defaults, spans, YAML and DSL agreement, diagnostics with positions."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Iterator

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
    model = load("vgg8b_mnist.yaml")
    assert model.allow == ("W202",) and lint(model) == ()  # the paper's 7 -> 3 -> 1 is intended
    warnings = lint(replace(model, allow=()))
    assert [(w.code, w.span.line) for w in warnings] == [("W202", 18), ("W202", 20)]
    # The hint is about this spec's geometry, not the paper's VGG8B.
    assert "make this pool's input 8x8 (more padding in the conv block before it)" in (warnings[0].hint or "")
    assert "VGG8B" not in (warnings[0].hint or "")
    m = spec_from_text("name: m\ninput: [1, 2, 2]\nnum_classes: 3\ndecoder_dim: 8\n"
                       "layers: [{kind: conv, out_channels: 16}]\n")
    (w,) = lint(m)
    assert w.code == "W203" and "fan-in 16" in w.message


def test_w202_hint_follows_the_spec_geometry() -> None:
    (w,) = lint(spec_from_text("name: m\ninput: [1, 9, 9]\nnum_classes: 3\n"
                               "layers: [{kind: maxpool, kernel: 2}, {kind: linear, out_features: 3}]\n"))
    assert w.code == "W202" and w.hint == ("if dropping them is intended, add W202 to the spec's allow list; "
                                           "otherwise make this pool's input 10x10 (pad or resize the input), or use "
                                           "a pool kernel that divides 9x9 (3)")


ALLOWING = "name: m\ninput: [1, 9, 9]\nnum_classes: 3\nlayers: [{kind: maxpool}, {kind: linear, out_features: 3}]\n"


def test_allow_silences_a_warning_without_changing_the_network() -> None:
    plain = spec_from_text(ALLOWING)
    allowed = spec_from_text(ALLOWING + "allow: [W202]\n")
    single = spec_from_text(ALLOWING + "allow: W202\n")
    dsl = spec_from_text("model m {\n  input = [1, 9, 9]\n  num_classes = 3\n  layers { maxpool(2) linear(3) }\n"
                         "  allow = [W202]\n}\n", "t.ng")
    assert [w.code for w in lint(plain)] == ["W202"]
    assert lint(allowed) == lint(single) == lint(dsl) == () and lint(plain, ("W202",)) == ()
    assert allowed.allow == single.allow == dsl.allow == ("W202",)
    # The network, its hash and so its generated C do not change.
    assert allowed.sha256 == plain.sha256 == dsl.sha256 and allowed.canonical() == plain.canonical()
    from nitrogen.pipeline import compile_model

    assert compile_model(allowed).files == compile_model(plain).files


def test_allow_takes_warning_codes_only() -> None:
    errs = _errors(MINIMAL + "allow: [W209, E217, 3]\n")
    assert [e.split()[1] for e in errs] == ["E207", "E207", "E205"]
    assert "unknown warning code 'W209'" in errs[0] and "'allow' must be a list" in errs[2]


def test_shipped_specs_print_no_warnings() -> None:
    """Six specs used to print W202 on every command; those that mean it say so with `allow`."""
    for path in sorted(SPECS.iterdir()):
        assert lint(nitrogen.load_spec(path)) == (), path.name


def test_weight_bits_is_a_nitrogen_option() -> None:
    """E217 at the key when the spec states reference semantics; a command-line override of a spec that
    states weight_bits keeps it, ignored, with warning W204."""
    errs = _errors(MINIMAL + "semantics: reference\nweight_bits: 16\n")
    assert errs == ["6:1 E217 weight_bits is a nitrogen-semantics option"]
    errs = _errors("model m {\n  input = [1, 2, 2]\n  num_classes = 3\n  semantics = reference\n  weight_bits = 8\n"
                   "  layers { linear(4) }\n}\n", "t.ng")
    assert errs == ["5:3 E217 weight_bits is a nitrogen-semantics option"]
    model = with_semantics(load("mlp1_mnist.yaml"), "reference")
    (w,) = lint(model)
    assert (w.code, w.severity, w.span.line, w.span.col) == ("W204", "warning", 7, 1)
    assert "ignored in reference semantics" in w.message
    assert lint(model, ("W204",)) == ()
    assert lint(with_semantics(load("tiny_reference.yaml"), "reference")) == ()  # no weight_bits: no warning


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


# -- the DSL parser cache ------------------------------------------------------------------------------------

TINY_DSL = "model m {\n  input = [1, 2, 2]\n  num_classes = 3\n  layers { linear(4) }\n}\n"


@pytest.fixture
def parser_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, empty cache directory for nitrogen.dsl.parser()."""
    import nitrogen.dsl as dsl

    monkeypatch.setenv("NITROGEN_CACHE_DIR", str(tmp_path / "cache"))
    dsl.parser.cache_clear()
    yield tmp_path / "cache"
    dsl.parser.cache_clear()


def _cached(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


def test_dsl_parser_is_built_once_then_loaded(parser_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every DSL command spent ~0.4 s building the LALR tables; now a saved parser is loaded."""
    import nitrogen.dsl as dsl

    want = spec_from_text(TINY_DSL, "t.ng").sha256
    (name,) = _cached(parser_cache)
    assert re.fullmatch(r"dsl-parser-[0-9a-f]{32}\.lark", name)  # written whole under its final name
    dsl.parser.cache_clear()

    class LoadOnly(dsl.Lark):  # type: ignore[misc, name-defined]
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("the parser was built although a cached one exists")

    monkeypatch.setattr(dsl, "Lark", LoadOnly)
    assert spec_from_text(TINY_DSL, "t.ng").sha256 == want
    with pytest.raises(NitrogenError):  # error reporting works with a loaded parser (interactive parsing)
        spec_from_text(TINY_DSL.replace("= [1", "= = [1"), "t.ng")


def test_dsl_parser_cache_follows_the_grammar(parser_cache: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """An edited grammar.lark gets its own cache file: a stale parser is never loaded."""
    import nitrogen.dsl as dsl

    dsl.parser()
    edited = tmp_path / "grammar.lark"
    edited.write_text(dsl._GRAMMAR.read_text() + "\n// edited\n")
    monkeypatch.setattr(dsl, "_GRAMMAR", edited)
    dsl.parser.cache_clear()
    dsl.parser()
    assert len(_cached(parser_cache)) == 2


def test_dsl_parser_cache_that_cannot_be_used(parser_cache: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A corrupt file is rebuilt; a directory that cannot be written (read-only, or a path under a file)
    and another user's file only cost the build, never an error."""
    import tempfile

    import nitrogen.dsl as dsl

    dsl.parser()
    (name,) = _cached(parser_cache)
    (parser_cache / name).write_bytes(b"not a pickle")
    dsl.parser.cache_clear()
    assert spec_from_text(TINY_DSL, "t.ng").name == "m"
    assert (parser_cache / name).read_bytes() != b"not a pickle" and _cached(parser_cache) == [name]

    def read_only(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Read-only file system")

    (parser_cache / name).unlink()
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    dsl.parser.cache_clear()
    assert spec_from_text(TINY_DSL, "t.ng").name == "m" and _cached(parser_cache) == []
    monkeypatch.undo()

    (tmp_path / "file").write_text("")
    monkeypatch.setenv("NITROGEN_CACHE_DIR", str(tmp_path / "file" / "cache"))
    dsl.parser.cache_clear()
    assert spec_from_text(TINY_DSL, "t.ng").name == "m"


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root to chown")
def test_dsl_parser_cache_of_another_user_is_not_loaded(parser_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nitrogen.dsl as dsl

    dsl.parser()
    (name,) = _cached(parser_cache)
    os.chown(parser_cache / name, 12345, -1)
    dsl.parser.cache_clear()
    monkeypatch.setattr(dsl.Lark, "load", classmethod(lambda cls, f: pytest.fail("loaded a foreign file")))
    assert spec_from_text(TINY_DSL, "t.ng").name == "m"


def test_parallel_processes_share_an_empty_parser_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {**os.environ, "NITROGEN_CACHE_DIR": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-m", "nitrogen", "check", str(SPECS / "tiny_mlp.ng")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert [p.suffix for p in cache.iterdir()] == [".lark"]  # one file, no temporary left behind


# -- hints for first-time mistakes: the same in both syntaxes -------------------------------------------------

_HEAD_YAML = "name: m\ninput: [1, 8, 8]\nnum_classes: 3\n"
_HEAD_DSL = "model m {\n  input = [1, 8, 8]\n  num_classes = 3\n"


@pytest.mark.parametrize("yaml_rest, dsl_rest, code, hint", [
    ("layers: [{kind: linear, out_features: 3}]\ntrain: {lr_inv: 0.002}\n",
     "  layers { linear(3) }\n  train { lr_inv = 0.002 }\n}\n", "E105",
     "lr_inv is 1/lr, the inverse of the learning rate: for lr = 0.002 write 500"),
    ("layers: [{kind: dropout, rate_pct: 0.1}, {kind: linear, out_features: 3}]\n",
     "  layers { dropout(0.1) linear(3) }\n}\n", "E105", "rate_pct is a percentage: a dropout rate of 0.1 is 10"),
    ("layers: [{kind: linear, out_features: 3}]\ntrain: {lr: 512}\n", "  layers { linear(3) }\n  train { lr = 512 }\n}\n",
     "E201", "did you mean 'lr_inv'? nitrogen takes the inverse of the learning rate: lr_inv 512 means lr = 1/512"),
    ("layers: [{kind: linear, in_features: 64, out_features: 3}]\n",
     "  layers { linear(3, in_features = 64) }\n}\n", "E201",
     "the input size of a layer is inferred from the layer before it: delete 'in_features'"),
    ("layers: [{kind: flatten}, {kind: linear, out_features: 3}]\n", "  layers { flatten() linear(3) }\n}\n", "E207",
     "a flatten is implied before the first linear block: delete this layer; the layer kinds are linear, conv, "
     "maxpool, avgpool, dropout"),
    ("layers: [{kind: conv, out_channels: 2, stride: 2}]\n", "  layers { conv(2, stride = 2) }\n}\n", "E201",
     "conv blocks always have stride 1: delete 'stride', and downsample with a maxpool or avgpool layer after the "
     "block (kernel 2 halves the size)"),
    ("layers: [{kind: conv, out_channels: 2, padding: same}]\n", "  layers { conv(2, padding = same) }\n}\n", "E205",
     "padding is a number of zero cells on each side: 'same' for a 3x3 kernel is 1, the default (delete the key)"),
    ("layers: [{kind: conv, out_channels: 2, kernel: [3, 3]}]\n", "  layers { conv(2, kernel = [3, 3]) }\n}\n",
     "E205", "kernels are square: write 3 for a 3x3 kernel"),
    ("train: {batch_size: 4}\n", "  train { batch_size = 4 }\n}\n", "E204",
     "add 'layers', the network's items in order, with at least one linear or conv block"),
])
def test_first_time_mistakes_get_the_same_hint_in_yaml_and_dsl(yaml_rest: str, dsl_rest: str, code: str,
                                                                hint: str) -> None:
    found = []
    for text, file in ((_HEAD_YAML + yaml_rest, "t.yaml"), (_HEAD_DSL + dsl_rest, "t.ng")):
        with pytest.raises(NitrogenError) as exc:
            nitrogen.parse_spec_text(text, file)
        found.append([(d.code, d.hint) for d in exc.value.diagnostics])
    assert found[0] == found[1] == [(code, hint)]


def test_a_key_written_in_the_wrong_section_is_named() -> None:
    assert _hints(_HEAD_YAML + "layers: [{kind: linear, out_features: 3}]\nbatch_size: 4\n") == \
        ["'batch_size' belongs in 'train': indent it under 'train:'"]
    assert _hints(_HEAD_DSL + "  epochs = 4\n  layers { linear(3) }\n}\n", "t.ng") == \
        ["'epochs' belongs in 'train': move it into 'train { ... }'"]
    assert _hints("name: m\ninput: [1, 8, 8]\nlayers: [{kind: linear, out_features: 3}]\ntrain: {num_classes: 3}\n") \
        == ["add 'num_classes', an integer in [2, 255]", "'num_classes' is a top-level key: move it out of 'train'"]
    assert _hints(_HEAD_YAML + "layers: [{kind: linear, out_features: 3}]\npatience: 3\n") == \
        ["'patience' belongs in 'train.plateau' or 'train.early_stopping'"]


def _hints(text: str, file: str = "t.yaml") -> list[str | None]:
    with pytest.raises(NitrogenError) as exc:
        nitrogen.parse_spec_text(text, file)
    return [d.hint for d in exc.value.diagnostics]


def test_no_space_after_the_colon_where_yaml_reads_one_word() -> None:
    """`lr_inv:64` is a YAML plain word: a syntax error when a key follows it (corpus 113, 114), else a value
    or a key that says so."""
    space = "put a space after the colon: 'lr_inv: 64' (YAML reads 'lr_inv:64' as one word)"
    assert _hints(_HEAD_YAML + "train:\n  lr_inv:64\nlayers: [{kind: linear, out_features: 3}]\n") == [space]
    assert _hints(_HEAD_YAML + "layers: [{kind:linear, out_features: 3}]\n") == \
        ["put a space after the colon: 'kind: linear' (YAML reads 'kind:linear' as one word)"]
    assert _errors(_HEAD_YAML + "layers: [{kind: linear, out_features: 3}]\ntrain:\n  lr_inv:64\n  amp_model:3\n"
                   "  seed: 1\n") == ["6:9 E101 YAML syntax error: no space after the colon of 'lr_inv'"]
