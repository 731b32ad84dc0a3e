"""Property tests (issue 6, point 3): random valid specs compile and train bit-exactly; random mutations
of the specs in specs/ give a result or clean diagnostics, never an internal error.

1. Valid specs. Hypothesis draws small MLPs and CNNs in both semantic modes (`mlp_specs`, `cnn_specs`),
   renders each as YAML and as DSL text, and checks: both texts load to the same canonical model; `analyse`
   and `compile_model` succeed; the C compiles warning-free under the strict flags of test_compile.py;
   `verify.run(steps=2)` is bit-exact with the NumPy reference (pseudo-random or edge-pattern inputs).
   The strategies stay inside the documented rules (square CNN inputs, kernels that fit, padding <
   kernel, no E217 combinations in `reference`, no E218), so a rejection is unexpected: it must still be a
   clean NitrogenError, and it is discarded (`reject()`) so that every function runs its full count of
   *valid* examples.
2. Mutations. Every spec in specs/ (YAML and DSL) is mutated as text (lines deleted, duplicated, swapped;
   numbers replaced by 0, -1, huge, float, string; keys and kinds renamed; random bytes including invalid
   UTF-8; YAML anchors, aliases and tags; deep nesting; truncation) and run through the real CLI in-process:
   exit 0 or 1, never 70, no traceback, and every error rendered as `file:line:col: error[Ennn]: ...`.
3. Regressions: the minimal failing examples these properties found, each pinned by a focused test.

Both properties are deterministic: hypothesis runs derandomized without an example database, and the
mutations come from `random.Random` seeded per spec file. A failing case is kept in the test's tmp dir.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import given, reject, settings
from hypothesis import strategies as st

import nitrogen
from nitrogen import cli, verify
from nitrogen.errors import NitrogenError
from nitrogen.pipeline import analyse, compile_model
from nitrogen.spec import C_KEYWORDS, RELU_TABLE, learning_pool_search

from conftest import SPECS, STRICT_FLAGS

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

# ------------------------------------------------------------------------------------------------
# 1. Valid specs
# ------------------------------------------------------------------------------------------------

EXAMPLES = 25  # valid examples per test function; 4 functions -> 100 per run
SLOPES = tuple(RELU_TABLE)
SPECIAL_NAMES = ("model", "layers", "train", "input", "main", "ng_x", "ng_relu", "x", "int8", "uint64_c", "e1",
                 "on", "no", "null")  # the last three need quotes in YAML


def _names() -> st.SearchStrategy[str]:
    plain = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True).filter(
        lambda s: s not in C_KEYWORDS and s != "ng")
    return st.one_of(plain, st.sampled_from(SPECIAL_NAMES))


def _maybe(draw: Callable[..., Any], strategy: st.SearchStrategy[Any]) -> Any:
    """A value, or None for "leave the key out" (the default applies)."""
    return draw(st.one_of(st.none(), strategy))


def _dropout(semantics: str) -> st.SearchStrategy[dict[str, Any]]:
    rates = st.integers(1, 19).map(lambda k: 5 * k) if semantics == "reference" else st.integers(1, 99)
    return rates.map(lambda r: {"kind": "dropout", "rate_pct": r})


def _train(draw: Callable[..., Any], semantics: str, size: int, conv_ok: bool) -> dict[str, Any]:
    """The train section: batch 1-8 and hyperparameters from tiny to the int32 edge."""
    big = (1 << 31) - 1
    lr = st.one_of(st.integers(1, 16), st.integers(17, 5000), st.sampled_from([1 << 16, 1 << 24, big]))
    amp = st.one_of(st.integers(1, 64), st.integers(65, 5000), st.sampled_from([1 << 16, 1 << 24, big]))
    decay = st.one_of(st.just(0), st.integers(1, 100), st.integers(101, 40000), st.sampled_from([1 << 20, big]))
    train: dict[str, Any] = {"batch_size": draw(st.integers(1, 8))}
    for key, strategy in (("lr_inv", lr), ("amp_model", amp), ("fwd_decay_inv", decay),
                          ("subnet_decay_inv", decay), ("seed", st.integers(0, (1 << 64) - 1)),
                          ("epochs", st.integers(1, 200)), ("stats_samples", st.integers(1, 60000))):
        value = _maybe(draw, strategy)
        if value is not None:
            train[key] = value
    if draw(st.booleans()):
        aug = {"crop_pad": draw(st.integers(0, min(size, 3))), "flip": draw(st.booleans())}
        train["augment"] = {k: v for k, v in aug.items() if draw(st.booleans())}
    if draw(st.integers(0, 4)) == 0:
        train["plateau"] = {"factor": draw(st.integers(1, 5)), "patience": draw(st.integers(1, 20))}
    if draw(st.integers(0, 4)) == 0:
        train["early_stopping"] = {"patience": draw(st.integers(1, 40)), "min_delta_pct": draw(st.integers(0, 5))}
    if semantics == "nitrogen" and conv_ok and draw(st.integers(0, 2)) == 0:
        train["conv_amp_adjust"] = True
    return train


def _top(draw: Callable[..., Any], semantics: str, shape: list[int]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": draw(_names()), "input": shape, "num_classes": draw(
        st.one_of(st.integers(2, 12), st.just(255)))}
    if draw(st.booleans()):
        spec["target_value"] = draw(st.integers(0, 127))
    if semantics == "reference" or draw(st.booleans()):
        spec["semantics"] = semantics
    if draw(st.booleans()):  # 8-bit weights on small fan-ins give the narrowest (int16, int8) accumulators
        spec["weight_bits"] = draw(st.one_of(st.sampled_from([8, 16, 32]), st.integers(8, 32)))
    return spec


def _linear(draw: Callable[..., Any]) -> dict[str, Any]:
    layer: dict[str, Any] = {"kind": "linear", "out_features": draw(st.integers(2, 24))}
    if draw(st.booleans()):
        layer["slope_inv"] = draw(st.sampled_from(SLOPES))
    return layer


@st.composite
def mlp_specs(draw: Callable[..., Any], semantics: str) -> dict[str, Any]:
    """1-3 linear blocks of 2-24 outputs on a C x H x W input (C 1-3, H and W 1-6), any slopes,
    0-2 dropouts anywhere (also on the input and into the output layer)."""
    c, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    spec = _top(draw, semantics, [c, h, w])
    layers = [_linear(draw) for _ in range(draw(st.integers(1, 3)))]
    for _ in range(draw(st.integers(0, 2))):
        layers.insert(draw(st.integers(0, len(layers))), draw(_dropout(semantics)))
    spec["layers"] = layers
    spec["train"] = _train(draw, semantics, min(h, w), conv_ok=True)
    if draw(st.integers(0, 3)) == 0:
        spec["init"] = {"scheme": "kaiming_uniform"}
    return spec


@st.composite
def cnn_specs(draw: Callable[..., Any], semantics: str) -> dict[str, Any]:
    """1-3 conv blocks (1-6 channels, kernel 1-5, padding < kernel and large enough to fit) on a square
    C x S x S input (C 1-3, S 4-12), each optionally followed by a max or avg feature pool (kernel up to 3
    and the input size) and a dropout; an optional input dropout; 0-2 trailing linear blocks; model- and
    layer-level decoder_dim and learning_pool. In `reference` mode, avg learning pools that would be
    padded become max (E217) and dropout rates are multiples of 5; conv_amp_adjust (nitrogen only) is set
    only when no block's amplification would become 0 (E218)."""
    size = draw(st.integers(4, 12))
    spec = _top(draw, semantics, [draw(st.integers(1, 3)), size, size])
    dims = st.one_of(st.sampled_from([1, 2, 4, 8, 16, 32, 50, 64, 100, 256, 4096]), st.integers(1, 300))
    model_dim = _maybe(draw, dims)
    model_pool = _maybe(draw, st.sampled_from(["max", "avg"]))
    if model_dim is not None:
        spec["decoder_dim"] = model_dim
    if model_pool is not None:
        spec["learning_pool"] = model_pool
    layers: list[dict[str, Any]] = []
    if draw(st.integers(0, 4)) == 0:
        layers.append(draw(_dropout(semantics)))
    adjust_ok = True
    for _ in range(draw(st.integers(1, 3))):
        k = draw(st.integers(1, 5))
        conv: dict[str, Any] = {"kind": "conv", "out_channels": draw(st.integers(1, 6)), "kernel": k}
        pad = _maybe(draw, st.integers(max(0, -(-(k - size) // 2)), k - 1))
        if pad is not None:
            conv["padding"] = pad
        if draw(st.booleans()):
            conv["slope_inv"] = draw(st.sampled_from(SLOPES))
        dim = _maybe(draw, dims)
        if dim is not None:
            conv["decoder_dim"] = dim
        pool = _maybe(draw, st.sampled_from(["max", "avg"]))
        if pool is not None:
            conv["learning_pool"] = pool
        size = size + 2 * (k // 2 if pad is None else pad) - k + 1
        kh, kw, ph, pw, _, _, _ = learning_pool_search(
            conv["out_channels"], size, dim if dim is not None else model_dim if model_dim is not None else 4096)
        if semantics == "reference" and (pool or model_pool) == "avg" and (ph or pw):
            conv["learning_pool"] = "max"  # E217: reference semantics cannot crop a padded avg learning pool
        adjust_ok = adjust_ok and size * size // (kh * kw) > 0
        layers.append(conv)
        if draw(st.booleans()):
            pk = draw(st.integers(1, min(3, size)))
            layers.append({"kind": draw(st.sampled_from(["maxpool", "avgpool"])), "kernel": pk})
            size //= pk
        if draw(st.integers(0, 3)) == 0:
            layers.append(draw(_dropout(semantics)))
    for _ in range(draw(st.integers(0, 2))):
        layers.append(_linear(draw))
        if draw(st.integers(0, 3)) == 0:
            layers.append(draw(_dropout(semantics)))
    spec["layers"] = layers
    spec["train"] = _train(draw, semantics, spec["input"][1], conv_ok=adjust_ok)
    return spec


def _yaml_scalar(value: Any, hexa: bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return hex(value) if hexa and value > 9 else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_scalar(v, hexa) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_scalar(v, hexa)}" for k, v in value.items()) + "}"
    # YAML 1.1 reads some names as other types (on/off/yes/no are booleans, null is None): quote those.
    return str(value) if isinstance(yaml.safe_load(str(value)), str) else f'"{value}"'


def to_yaml(spec: dict[str, Any], flow_layers: bool, hexa: bool) -> str:
    """Block style at the top; layers as flow mappings or as block mappings; nested train sections in
    flow style. `hexa` writes integers above 9 in hexadecimal (YAML 1.1 ints)."""
    out = ["# generated by tests/test_properties.py\n"]
    for key, value in spec.items():
        if key == "layers":
            out.append("layers:\n")
            for layer in value:
                if flow_layers:
                    out.append(f"  - {_yaml_scalar(layer, hexa)}\n")
                else:
                    items = list(layer.items())
                    out.append(f"  - {items[0][0]}: {_yaml_scalar(items[0][1], hexa)}\n")
                    out.extend(f"    {k}: {_yaml_scalar(v, hexa)}\n" for k, v in items[1:])
        elif isinstance(value, dict):
            out.append(f"{key}:\n")
            out.extend(f"  {k}: {_yaml_scalar(v, hexa)}\n" for k, v in value.items())
        else:
            out.append(f"{key}: {_yaml_scalar(value, hexa)}\n")
    return "".join(out)


def _dsl_value(value: Any, grouped: bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:_}" if grouped else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_dsl_value(v, grouped) for v in value) + "]"
    return str(value)


def _dsl_section(name: str, body: dict[str, Any], grouped: bool, indent: str) -> list[str]:
    out = [f"{indent}{name} {{\n"]
    for k, v in body.items():
        if isinstance(v, dict):
            out.extend(_dsl_section(k, v, grouped, indent + "  "))
        else:
            out.append(f"{indent}  {k} = {_dsl_value(v, grouped)}\n")
    return out + [f"{indent}}}\n"]


def to_dsl(spec: dict[str, Any], positional: bool, grouped: bool) -> str:
    """The same spec in the DSL: `model NAME { ... }`, layers as calls whose main size is positional
    (`linear(12)`) or named (`linear(out_features = 12)`); `grouped` writes integers as 12_000."""
    from nitrogen.spec import PRIMARY_KEY

    out = ["// generated by tests/test_properties.py\n", f"model {spec['name']} {{\n"]
    for key, value in spec.items():
        if key == "name":
            continue
        if key == "layers":
            out.append("  layers {\n")
            for layer in value:
                kind = layer["kind"]
                args = [f"{k} = {_dsl_value(v, grouped)}" for k, v in layer.items() if k != "kind"]
                if positional:
                    args = [_dsl_value(layer[PRIMARY_KEY[kind]], grouped)] + [
                        a for a in args if not a.startswith(PRIMARY_KEY[kind] + " ")]
                out.append(f"    {kind}({', '.join(args)})\n")
            out.append("  }\n")
        elif isinstance(value, dict):
            out.extend(_dsl_section(key, value, grouped, "  "))
        else:
            out.append(f"  {key} = {_dsl_value(value, grouped)}\n")
    return "".join(out + ["}\n"])


def _strict_compile(files: dict[str, str], work: Path) -> None:
    for name, text in files.items():
        (work / name).write_text(text)
    source = next(work / n for n in files if n.endswith(".c"))
    proc = subprocess.run(["gcc", *STRICT_FLAGS, "-O2", "-c", str(source), "-o", str(work / "model.o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", f"strict gcc failed in {work}:\n{proc.stderr}"


def check_valid_spec(spec: dict[str, Any], style: tuple[bool, bool, str], seed: int, tmp: Path,
                     pattern: str = "random") -> bool:
    """The properties of one generated spec; False when the spec checks rejected it (cleanly)."""
    a, b, fmt = style
    work = Path(tempfile.mkdtemp(prefix="case-", dir=tmp))
    yaml_path, dsl_path = work / "spec.yaml", work / "spec.ng"
    yaml_path.write_text(to_yaml(spec, flow_layers=a, hexa=b))
    dsl_path.write_text(to_dsl(spec, positional=a, grouped=b))
    try:
        from_yaml = nitrogen.load_spec(yaml_path)
    except NitrogenError as exc:
        for d in exc.diagnostics:  # a clean rejection: coded, located diagnostics
            assert re.fullmatch(r"E[23]\d\d", d.code) and d.span is not None, d.render()
        with pytest.raises(NitrogenError):
            nitrogen.load_spec(dsl_path)  # the DSL form is rejected too
        shutil.rmtree(work)
        return False
    from_dsl = nitrogen.load_spec(dsl_path)
    assert from_yaml.canonical() == from_dsl.canonical(), f"YAML and DSL differ, see {work}"
    model = from_yaml if fmt == "yaml" else from_dsl
    try:
        analyse(model)
    except NitrogenError as exc:
        for d in exc.diagnostics:
            assert re.fullmatch(r"E[23]\d\d", d.code) and d.span is not None, d.render()
        shutil.rmtree(work)
        return False
    compiled = compile_model(model)
    _strict_compile(compiled.files, work)
    outcome = verify.run(model, steps=2, seed=seed, pattern=pattern, workdir=str(work / "verify"))
    assert outcome.ok, f"{outcome.mismatch} ({pattern} inputs, seed {seed}); spec and build kept in {work}"
    shutil.rmtree(work)
    return True


STYLES = st.tuples(st.booleans(), st.booleans(), st.sampled_from(["yaml", "dsl"]))
SEEDS = st.integers(0, 1 << 62)
# Mostly pseudo-random batches; sometimes the edge patterns (all -128, all 127, all 0, a mix), which make
# every window and every logit tie.
PATTERNS = st.sampled_from(["random", "random", "random", "min", "max", "zero", "mixed"])


def run_valid(strategy: st.SearchStrategy[dict[str, Any]], tmp_path: Path) -> None:
    valid: list[int] = []

    # No health check is suppressed: generation is fast (the slow part, the C builds, is the test body,
    # which `deadline=None` allows), and the strategies reject almost nothing.
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
    @given(spec=strategy, style=STYLES, seed=SEEDS, pattern=PATTERNS)
    def prop(spec: dict[str, Any], style: tuple[bool, bool, str], seed: int, pattern: str) -> None:
        if not check_valid_spec(spec, style, seed, tmp_path, pattern):
            reject()
        valid.append(1)

    start = time.perf_counter()
    prop()
    print(f"{len(valid)} valid examples in {time.perf_counter() - start:.1f} s")
    assert len(valid) >= EXAMPLES


@needs_gcc
@pytest.mark.parametrize("semantics", ["nitrogen", "reference"])
def test_random_mlps_compile_and_are_bit_exact(semantics: str, tmp_path: Path) -> None:
    run_valid(mlp_specs(semantics), tmp_path)


@needs_gcc
@pytest.mark.parametrize("semantics", ["nitrogen", "reference"])
def test_random_cnns_compile_and_are_bit_exact(semantics: str, tmp_path: Path) -> None:
    run_valid(cnn_specs(semantics), tmp_path)


# ------------------------------------------------------------------------------------------------
# 2. Mutations of the specs in specs/
# ------------------------------------------------------------------------------------------------

SPEC_FILES = sorted([*SPECS.glob("*.yaml"), *SPECS.glob("*.ng")])
MUTATIONS_PER_SPEC = 60
KEYS = ("name", "input", "num_classes", "target_value", "semantics", "weight_bits", "decoder_dim", "learning_pool",
        "layers", "train", "init", "kind", "out_features", "out_channels", "kernel", "padding", "slope_inv",
        "rate_pct", "batch_size", "lr_inv", "amp_model", "fwd_decay_inv", "subnet_decay_inv", "seed", "epochs",
        "plateau", "early_stopping", "augment", "crop_pad", "flip", "conv_amp_adjust", "stats_samples",
        "factor", "patience", "from_epoch", "min_delta_pct", "scheme", "model")
VALUES = ("linear", "conv", "maxpool", "avgpool", "dropout", "nitrogen", "reference", "max", "avg",
          "kaiming_uniform", "true", "false", "null", "linaer", "Conv", "pool", "", "~")
NUMBERS = ("0", "-1", "1", "2", "3", "5", "255", "256", str(1 << 31), str((1 << 31) - 1), str(1 << 63),
           str(1 << 64), str(-(1 << 63)), "9" * 25, "1.5", "1e3", "-0", ".inf", ".nan", "0x7fffffff", "0b_",
           "0b", "1_0", "1:30", "0o17", "012", '"12"', "'3'", "abc", "null", "true", "[]", "{}", "[1, 2]",
           "2001-01-01", "0x", "+5")
BYTES = (b"\xff", b"\xfe", b"\xc3", b"\xc3\x28", b"\xe2\x82", b"\x00", b"\x01", b"\x1b", b"\t", b"\r", b"\r\n",
         b"\x0b", b"\x0c", b"\x85", b"\xc2\x85", b"\xe2\x80\xa8", b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80")
SNIPPETS = ("&a ", "*a", "*zz", "<<: *a\n", "!!float ", "!!int ", "!!str ", "!!python/object/apply:os.system ",
            "!!binary ", "!foo ", "---\n", "...\n", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "? ", "|\n", ">-\n",
            "- ", ": ", "{", "}", "[", "]", ",", "(", ")", "=", '"', "'", "#", "//", "\\", "@", "`", "&", "*",
            "model x {", "layers {", "linear(", "conv(3, kernel = 9)", "=", "\n  ", "\n", "\t")


def _rename(word: str, rng: random.Random) -> str:
    choice = rng.randrange(6)
    if choice == 0 and len(word) > 1:  # drop a character
        i = rng.randrange(len(word))
        return word[:i] + word[i + 1:]
    if choice == 1:  # duplicate a character
        i = rng.randrange(len(word))
        return word[:i] + word[i] + word[i:]
    if choice == 2 and len(word) > 1:  # swap two neighbours
        i = rng.randrange(len(word) - 1)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if choice == 3:
        return word.upper()
    return rng.choice(KEYS + VALUES)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True) or [""]


def m_delete_line(t: str, rng: random.Random) -> str:
    lines = _lines(t)
    del lines[rng.randrange(len(lines))]
    return "".join(lines)


def m_duplicate_line(t: str, rng: random.Random) -> str:
    lines = _lines(t)
    i = rng.randrange(len(lines))
    lines.insert(rng.randrange(len(lines) + 1), lines[i])
    return "".join(lines)


def m_swap_lines(t: str, rng: random.Random) -> str:
    lines = _lines(t)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


def m_number(t: str, rng: random.Random) -> str:
    found = list(re.finditer(r"-?\d[\d_]*", t))
    if not found:
        return t
    m = rng.choice(found)
    new = "9" * rng.choice((30, 4400, 6000)) if rng.randrange(8) == 0 else rng.choice(NUMBERS)
    return t[:m.start()] + new + t[m.end():]


def m_word(t: str, rng: random.Random) -> str:
    found = list(re.finditer(r"[A-Za-z_][A-Za-z0-9_]*", t))
    if not found:
        return t
    m = rng.choice(found)
    return t[:m.start()] + _rename(m.group(), rng) + t[m.end():]


def m_enum(t: str, rng: random.Random) -> str:
    """Swap a kind, semantics or pool type for another valid one (reaches the cross-key checks)."""
    found = list(re.finditer(r"\b(linear|conv|maxpool|avgpool|dropout|nitrogen|reference|max|avg)\b", t))
    if not found:
        return t
    m = rng.choice(found)
    return t[:m.start()] + rng.choice(VALUES[:9]) + t[m.end():]


def m_bytes(t: str, rng: random.Random) -> str:
    raw = rng.choice(BYTES) if rng.randrange(4) else bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
    i = rng.randrange(len(t) + 1)
    return t[:i] + raw.decode("utf-8", "surrogateescape") + t[i:]


def m_snippet(t: str, rng: random.Random) -> str:
    i = rng.randrange(len(t) + 1)
    return t[:i] + rng.choice(SNIPPETS) + t[i:]


def m_anchor(t: str, rng: random.Random) -> str:
    """YAML anchors and aliases: a value anchored and reused, a self-referencing anchor, an alias chain
    that nests deeper at every step, or an alias bomb."""
    choice = rng.randrange(4)
    if choice == 0:
        found = list(re.finditer(r": (\[[^\]\n]*\]|\d+)", t))
        if len(found) >= 2:
            a, b = rng.sample(found, 2)
            first, second = sorted((a, b), key=lambda m: m.start())
            t = t[:second.start(1)] + "*v" + t[second.end(1):]
            return t[:first.start(1)] + "&v " + t[first.start(1):]
        return t
    if choice == 1:
        return re.sub(r"^input: ", "input: &r [1, *r, ", t, count=1, flags=re.M) + "\nx: &s {a: *s}\n"
    if choice == 2:
        chain = "chain:\n  - &c0 [1]\n" + "".join(f"  - &c{i} [*c{i - 1}]\n" for i in range(1, 1500))
        return t + "\n" + chain
    bomb = "bomb:\n  - &b0 [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"  - &b{i} [{', '.join([f'*b{i - 1}'] * 9)}]\n" for i in range(1, 9))
    return t + "\n" + bomb


def m_nest(t: str, rng: random.Random) -> str:
    found = list(re.finditer(r"-?\d[\d_]*", t))
    if not found:
        return t
    m = rng.choice(found)
    n = rng.choice((20, 200, 3000))
    return t[:m.start()] + "[" * n + m.group() + "]" * n + t[m.end():]


def m_indent(t: str, rng: random.Random) -> str:
    lines = _lines(t)
    i = rng.randrange(len(lines))
    lines[i] = (" " * rng.randint(1, 5) + lines[i]) if rng.randrange(2) else lines[i].lstrip()
    return "".join(lines)


def m_truncate(t: str, rng: random.Random) -> str:
    return t[:rng.randrange(len(t) + 1)]


def m_crossover(t: str, rng: random.Random) -> str:
    donor = _lines(rng.choice(SPEC_FILES).read_text())
    lines = _lines(t)
    lines.insert(rng.randrange(len(lines) + 1), rng.choice(donor))
    return "".join(lines)


MUTATORS: tuple[Callable[[str, random.Random], str], ...] = (
    m_delete_line, m_duplicate_line, m_swap_lines, m_number, m_number, m_number, m_word, m_word, m_enum, m_enum,
    m_bytes, m_snippet, m_anchor, m_nest, m_indent, m_truncate, m_crossover)

HEADER = re.compile(r"(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<sev>error|warning)\[(?P<code>[EW]\d{3})\]: .+")


def run_cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, err.getvalue()


def check_cli_outcome(path: Path, code: int, stderr: str) -> None:
    """Exit 0 or 1; no traceback; every line of stderr that is not indented is a located diagnostic
    (`file:line:col: error[Ennn]: ...`, a line inside the file) or the final error count."""
    assert code in (0, 1), f"exit {code}\n{stderr}"
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    data = path.read_bytes()
    n_lines = max(data.count(b"\n"), len(data.decode("utf-8", "replace").splitlines())) + 1
    errors = 0
    for line in stderr.split("\n"):  # a terminal's lines (str.splitlines also splits at U+2028, \x1c...)
        if not line or line[0].isspace():
            continue  # source line, caret, note or hint
        if re.fullmatch(r"\d+ errors?", line):
            assert int(line.split()[0]) == errors, stderr
            continue
        m = HEADER.fullmatch(line)
        assert m, f"not a located diagnostic: {line!r}\n{stderr}"
        assert m["file"] == str(path), line
        assert 1 <= int(m["line"]) <= n_lines and int(m["col"]) >= 1, line
        assert m["code"][1] in "123" if m["sev"] == "error" else m["code"].startswith("W"), line
        errors += m["sev"] == "error"
    assert (errors > 0) == (code == 1), stderr


def test_spec_corpus_is_there() -> None:
    assert len(SPEC_FILES) * MUTATIONS_PER_SPEC >= 1000
    assert any(p.suffix == ".ng" for p in SPEC_FILES)


def test_docs_state_the_counts_per_run() -> None:
    readme = " ".join((SPECS.parent / "docs" / "diagnostics.md").read_text().split())
    assert f"**{4 * EXAMPLES} random valid specs per run** ({EXAMPLES} each" in readme
    assert f"**{len(SPEC_FILES) * MUTATIONS_PER_SPEC:,} mutations per run** of the {len(SPEC_FILES)} specs" in readme


@pytest.mark.parametrize("spec", SPEC_FILES, ids=lambda p: p.name)
def test_mutated_specs_give_diagnostics_not_tracebacks(spec: Path, tmp_path: Path) -> None:
    rng = random.Random(f"nitrogen-mutations-{spec.name}")
    original = spec.read_text()
    run = 0
    for i in range(MUTATIONS_PER_SPEC):
        text, applied = original, []
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            mutate = rng.choice(MUTATORS)
            text = mutate(text, rng)
            applied.append(mutate.__name__)
        # Mostly the spec's own syntax; sometimes YAML parsed as DSL and the other way round.
        suffix = spec.suffix if rng.randrange(10) else (".ng" if spec.suffix == ".yaml" else ".yaml")
        case = tmp_path / f"m{i:03d}"
        case.mkdir()
        path = case / f"{spec.stem}{suffix}"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        argv = ["check", str(path)]
        if rng.randrange(8) == 0:
            argv = ["compile", str(path), "-o", str(case / "out")]
        if rng.randrange(6) == 0:
            argv += ["--semantics", rng.choice(("nitrogen", "reference"))]
        code, stderr = run_cli(argv)
        try:
            check_cli_outcome(path, code, stderr)
            if argv[0] == "compile" and code != 0:
                assert not (case / "out").exists(), "compile wrote files despite errors"
        except AssertionError as exc:
            raise AssertionError(f"{spec.name} mutation {i} ({', '.join(applied)}), `nitrogen {' '.join(argv)}` "
                                 f"(kept): {exc}") from None
        shutil.rmtree(case)
        run += 1
    assert run == MUTATIONS_PER_SPEC


# ------------------------------------------------------------------------------------------------
# 3. Regressions: the minimal examples these properties found, pinned
# ------------------------------------------------------------------------------------------------

def _compile_and_verify(text: str, tmp_path: Path, semantics: str | None = None) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    model = nitrogen.load_spec(path)
    if semantics:
        from nitrogen.spec import with_semantics
        model = with_semantics(model, semantics)
    _strict_compile(compile_model(model).files, tmp_path)
    outcome = verify.run(model, steps=2, seed=0, workdir=str(tmp_path / "verify"))
    assert outcome.ok, outcome.mismatch


@needs_gcc
@pytest.mark.parametrize("semantics", ["nitrogen", "reference"])
def test_unpadded_conv_with_max_learning_pool_compiles_strictly(semantics: str, tmp_path: Path) -> None:
    """A 1x1 conv (padding 0) with a max learning pool: the fused gradient wrote `hh < 0u`, which gcc's
    -Wtype-limits (in -Wextra) rejects; the tap bounds now skip the test when there is no padding."""
    _compile_and_verify("name: a\ninput: [1, 4, 4]\nnum_classes: 2\n"
                        "layers:\n  - {kind: conv, out_channels: 1, kernel: 1, decoder_dim: 1}\n"
                        "train: {batch_size: 1}\n", tmp_path, semantics)


@needs_gcc
def test_reference_dropout_between_convs_compiles_strictly(tmp_path: Path) -> None:
    """A reference-mode dropout stores its int8-range output as int16; the next conv's zero-padded copy is
    int8 (its proven range): the copy needs an explicit, value-preserving cast under -Wconversion."""
    _compile_and_verify("name: model\ninput: [1, 4, 4]\nnum_classes: 2\nsemantics: reference\nlayers:\n"
                        "  - {kind: conv, out_channels: 1, kernel: 1}\n  - {kind: dropout, rate_pct: 5}\n"
                        "  - {kind: conv, out_channels: 1, kernel: 1}\ntrain: {batch_size: 1}\n", tmp_path)


@needs_gcc
@pytest.mark.parametrize("layer", ["{kind: linear, out_features: 3}", "{kind: conv, out_channels: 1, kernel: 1}"])
def test_verify_with_32_bit_weights(layer: str, tmp_path: Path) -> None:
    """With weight_bits = 32 the harness's "out of range" import (it used INT32_MAX) was in range, so
    `verify` reported a mismatch for every such spec; it now imports INT32_MIN, outside +-(2^31 - 1)."""
    _compile_and_verify(f"name: model\ninput: [1, 4, 4]\nnum_classes: 2\nweight_bits: 32\nlayers:\n  - {layer}\n"
                        "train: {batch_size: 1}\n", tmp_path)


@needs_gcc
def test_int16_conv_accumulator_with_two_taps_compiles_strictly(tmp_path: Path) -> None:
    """8-bit weights and a 1-channel 2x2 conv prove an int16 accumulator plane; the multiply-accumulate
    kernel wrote `acc[i] += (int16_t)a + (int16_t)b`, an implicit int -> int16_t conversion (-Wconversion)."""
    _compile_and_verify("name: model\ninput: [1, 4, 4]\nnum_classes: 2\nweight_bits: 8\nlayers:\n"
                        "  - {kind: conv, out_channels: 1, kernel: 1}\n  - {kind: conv, out_channels: 1, kernel: 2}\n"
                        "train: {batch_size: 1}\n", tmp_path)


DROPOUT_THEN = {  # spec tail after `conv(1 or 2 channels, 1x1) -> dropout`, and the two tensors that must not alias
    "per-sample conv": ("  - {kind: dropout, rate_pct: 10}\n  - {kind: conv, out_channels: 4, kernel: 1, decoder_dim: 1}\n"
                        "  - {kind: linear, out_features: 2}\n", "b1_h"),
    "1x1 pool, wider": ("  - {kind: dropout, rate_pct: 60}\n  - {kind: maxpool, kernel: 1}\n"
                        "  - {kind: linear, out_features: 3}\n", "pool2_y"),
}


@needs_gcc
@pytest.mark.parametrize("case", DROPOUT_THEN)
def test_dropout_skipped_in_evaluation_keeps_its_input_intact(case: str, tmp_path: Path) -> None:
    """conv -> dropout -> (conv with a max learning pool | 1x1 pool): evaluation skips the dropout, so the next
    item read the conv block's output from the act slot it wrote its own output to, and overwrote inputs it
    had not read yet (the per-sample conv forward: later samples; an int16 1x1 pool over int8: later cells).
    Predictions differed from the reference; training did not. The dropout now uses a slot of its own."""
    from nitrogen.lower import lower

    tail, output = DROPOUT_THEN[case]
    text = ("name: model\ninput: [1, 7, 7]\nnum_classes: 10\nlayers:\n  - {kind: conv, out_channels: 2, kernel: 1}\n"
            f"{tail}train: {{batch_size: 6, amp_model: 1}}\n")
    slots = {t.name: t.slot for t in lower(nitrogen.parse_spec_text(text, "t.yaml")).tensors}
    assert slots["b0_h"] != slots[output]
    _compile_and_verify(text, tmp_path)


@pytest.mark.parametrize("literal", ["0b_", "0x_", "-0b__"])
def test_yaml_integer_without_digits_is_a_diagnostic(literal: str, tmp_path: Path) -> None:
    """YAML 1.1 resolves `0b_` and `0x_` as integers that have no digits; PyYAML's int('') raised a
    ValueError, which the CLI reported as an internal error (exit 70)."""
    path = tmp_path / "spec.yaml"
    path.write_text(f"name: a\ninput: [1, 2, {literal}]\nnum_classes: 2\nlayers: [{{kind: linear, out_features: 3}}]\n")
    code, stderr = run_cli(["check", str(path)])
    check_cli_outcome(path, code, stderr)
    assert stderr.startswith(f"{path}:2:15: error[E105]: unsupported YAML value '{literal}'"), stderr


@pytest.mark.parametrize("suffix, value", [(".yaml", '"x\\ny"'), (".ng", '"x\\ny"'), (".yaml", '"\\e[2Jx"')])
def test_quoted_control_characters_stay_on_one_line(suffix: str, value: str, tmp_path: Path) -> None:
    """A quoted '\\n' or escape sequence in a value used to be quoted raw in the message: the header broke
    over two lines and an ANSI sequence reached the terminal. Messages now show it escaped."""
    path = tmp_path / f"spec{suffix}"
    if suffix == ".ng":
        path.write_text(f"model a {{ input = [1, 2, 3] num_classes = 2 semantics = {value} layers {{ linear(3) }} }}\n")
    else:
        path.write_text(f"name: a\ninput: [1, 2, 3]\nnum_classes: 2\nsemantics: {value}\n"
                        "layers: [{kind: linear, out_features: 3}]\n")
    code, stderr = run_cli(["check", str(path)])
    check_cli_outcome(path, code, stderr)
    assert "\x1b" not in stderr
    assert "unknown semantics 'x\\ny'" in stderr or "unknown semantics '\\x1b[2Jx'" in stderr, stderr
