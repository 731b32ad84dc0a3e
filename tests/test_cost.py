"""`nitrogen report`: RAM by category from the real memory plan, operation counts of the generated training
step, and the paper's analytic method (docs/cost-report.md; the published table reproduced to its printed
precision)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from nitrogen import cost
from nitrogen.ir import OpKind
from nitrogen.layout import plan
from nitrogen.pipeline import analyse, compile_model

from conftest import ROOT, load

# The paper's energy and memory table, typed from it: (spec, FP optimizer, --input-features), then
# FP energy mJ, NITRO-D energy mJ, energy reduction %, FP memory MB, NITRO-D memory MB, memory reduction %.
PAPER: list[tuple[str, str, int | None, str, str, str, str, str, str]] = [
    ("mlp1_mnist.yaml", "sgd", None, "0.07473", "0.05269", "29.50", "0.891", "0.544", "38.96"),
    ("mlp2_fmnist.yaml", "sgd", None, "0.1624", "0.1144", "29.58", "1.649", "1.069", "35.18"),
    ("mlp3_mnist.yaml", "adam", None, "2.675", "1.813", "32.23", "40.11", "10.28", "74.36"),
    ("mlp4_cifar10.yaml", "adam", 1024, "19.40", "13.12", "32.37", "291.79", "78.91", "72.96"),
    ("vgg8b_cifar10.yaml", "adam", None, "838.7", "583.4", "30.45", "278.69", "67.94", "75.62"),
    ("vgg11b_cifar10.yaml", "adam", None, "1238.9", "861.7", "30.45", "386.04", "92.12", "76.14"),
]
KEYS = ("fp_energy_mj", "nitro_energy_mj", "energy_reduction_pct", "fp_memory_mb", "nitro_memory_mb",
        "memory_reduction_pct")


def _as_printed(value: float, printed: str) -> str:
    """`value` with as many decimals as the published figure `printed`."""
    decimals = len(printed.partition(".")[2])
    return f"{value:.{decimals}f}"


@pytest.mark.parametrize("row", PAPER, ids=[row[0] for row in PAPER])
def test_paper_table_is_reproduced(row: tuple[str, str, int | None, str, str, str, str, str, str]) -> None:
    spec, optimizer, features, *figures = row
    d = cost.paper_report(load(spec), fp_optimizer=optimizer, input_features=features)
    assert [_as_printed(d[key], want) for key, want in zip(KEYS, figures)] == figures


def test_paper_mlp4_with_its_real_3072_inputs() -> None:
    """The paper's analytic method: counting MLP4 with the 3072 inputs it trains with gives 32.40 %."""
    d = cost.paper_report(load("mlp4_cifar10.yaml"), fp_optimizer="adam")
    assert d["input_features"] == 3072
    assert f"{d['energy_reduction_pct']:.2f}" == "32.40"


def test_paper_counts_cnns_with_cifar_input_and_one_head() -> None:
    d = cost.paper_report(load("vgg8b_mnist.yaml"), fp_optimizer="adam")  # 1x28x28 spec, counted as CIFAR
    assert (d["input_features"], d["heads"], d["batch"]) == (3072, [4096], 64)
    assert f"{d['memory_reduction_pct']:.2f}" == "75.62"


def test_input_features_is_for_mlps_only() -> None:
    with pytest.raises(cost.UsageError, match="MLPs only"):
        cost.paper_report(load("vgg8b_cifar10.yaml"), input_features=1024)


@pytest.mark.parametrize("spec", ["tiny_mlp.yaml", "tiny_cnn.yaml", "mlp1_mnist.yaml", "vgg8b_cifar10.yaml"])
def test_ram_categories_sum_to_the_context_size(spec: str) -> None:
    model = load(spec)
    program, report = analyse(model)
    layout = plan(program, report)
    r = cost.ram(layout)
    assert r.params + r.saved + r.scratch + r.state + r.padding == r.total == layout.ctx_bytes
    assert r.params == layout.param_bytes and r.state == 8 + 8 + 8 + 4 + 4 and 0 <= r.padding < 64
    header = compile_model(model).files[f"{model.name}.h"]
    macro = re.search(rf"#define {model.name.upper()}_CTX_BYTES\s+(\d+)", header)
    assert macro and int(macro.group(1)) == r.total


def test_ram_of_tiny_mlp_by_hand() -> None:
    # tiny_mlp: 30 -> 12 -> 7 -> 4 classes, batch 8, int16 weights.
    # params: (12*30 + 4*12 + 7*12 + 4*7 + 4*7) * 2 bytes = 548 * 2 = 1096
    # saved: act0 = b0_h int8[8*12] = 96, act1 = b1_h int8[8*7] = 56 -> 152
    # scratch: block 0's group, the largest: b0_row int64[30] 240 + b0_l_dx int32[96] 384 + b0_dz int32[96] 384
    #          + b0_l_row int32[12] 48 + b0_l_delta int16[32] 64 + b0_z int8[96] 96 + b0_l_logits int8[32] 32 = 1248
    # state: rng_state, rng_inc, lr_inv (8 bytes each) + steps, epoch (4 each) = 32; padding 2528 - 2524 = 4
    program, report = analyse(load("tiny_mlp.yaml"))
    assert cost.ram(plan(program, report)) == cost.Ram(1096, 152, 1248, 32, 0, 2528)


def test_largest_buffers() -> None:
    program, report = analyse(load("mlp1_mnist.yaml"))
    layout = plan(program, report)
    top = cost.largest_buffers(layout, 3)
    assert [(b.category, b.path, b.ctype, b.count, b.bytes) for b in top] == [
        ("params", "ctx->b0_w", "int16_t", 78400, 156800),
        ("scratch", "ctx->scratch.b0.b0_l_dx", "int32_t", 6400, 25600),
        ("scratch", "ctx->scratch.b0.b0_dz", "int32_t", 6400, 25600)]
    every = cost.largest_buffers(layout, 10**6)
    assert [b.bytes for b in every] == sorted((b.bytes for b in every), reverse=True)
    assert len(every) == len(cost.buffers(layout))


def test_every_op_kind_has_a_count_rule() -> None:
    assert set(cost.COUNT) == set(OpKind)


def test_op_counts_of_tiny_mlp_by_hand() -> None:
    # tiny_mlp, batch B = 8: x int8 [8][30] -> b0 (12, s = 3) -> b1 (7, s = 20) -> output (4 classes).
    # Weights int16, NITRO-ReLU outputs int8, deltas int16, dz and learning dx int32, accumulators int32;
    # the G rows of b0 (36 bits) and b1 (35 bits) are int64, every product fits 32 bits (mul32).
    # forward: linear_scale  mul = add = 8*12*30 + 8*7*12 + 8*4*7 = 2880 + 672 + 224 = 3776
    #                        div (NITRO-Scaling) = 8*12 + 8*7 + 8*4 = 184
    # losses:  learning linears mul = add = 8*4*12 + 8*4*7 = 384 + 224 = 608, div = 32 + 32 = 64
    #          loss_grad x3: mul = 3 * 8*4 = 96, add = 3 * 2 * 8*4 = 192
    # backward: linear_dx mul = add = 8*4*12 + 8*4*7 = 608
    #           G: b0_l 4*8*12 = 384, b0 12*8*30 = 2880 (add64), b1_l 4*8*7 = 224, b1 7*8*12 = 672 (add64),
    #              out 4*8*7 = 224 -> mul32 = 4384, add32 = 384 + 224 + 224 = 832, add64 = 2880 + 672 = 3552
    #           NITRO-ReLU backward div32 = 8*12 + 8*7 = 152
    # update: 548 weights: div64 548 (G / A), div32 548 (W / decay_inv), add32 2 * 548 = 1096; mul64 5 (lr_inv*amp)
    program, report = analyse(load("tiny_mlp.yaml"))
    rows = cost.count_ops(program, report)

    def row(mul32: int = 0, mul64: int = 0, add32: int = 0, add64: int = 0, div32: int = 0,
            div64: int = 0) -> dict[str, int]:
        return {"mul32": mul32, "mul64": mul64, "add32": add32, "add64": add64, "div32": div32, "div64": div64}

    assert rows == {
        ("forward", "linear_scale"): row(mul32=3776, add32=3776, div32=184),
        ("forward", "nitro_relu"): row(),
        ("losses", "linear_scale"): row(mul32=608, add32=608, div32=64),
        ("losses", "loss_grad"): row(mul32=96, add32=192),
        ("backward", "linear_dx"): row(mul32=608, add32=608),
        ("backward", "linear_grad_sgd"): row(mul32=4384, add32=832, add64=3552),
        ("backward", "nitro_relu_backward"): row(div32=152),
        ("update", "linear_grad_sgd"): row(mul64=5, add32=1096, div32=548, div64=548),
    }
    ops = cost.total(rows.values())
    assert ops == row(mul32=9472, mul64=5, add32=7112, add64=3552, div32=948, div64=548)
    # 9472 * 3.1 + 5 * 12.4 + 7112 * 0.1 + 3552 * 0.2 = 30846.8 pJ
    assert cost.energy_pj(ops) == pytest.approx(30846.8)


def test_fp32_baseline_of_tiny_mlp_by_hand() -> None:
    # Layers 30->12, 12->7, 7->4 (P = 360 + 84 + 28 = 472), batch 8, SGD (2 mul + 2 add per parameter).
    # mul = 8 * (472 fwd + 472 dW + 472 dX) + 2*472 = 11328 + 944 = 12272
    # add = 8 * (12*29 + 7*11 + 4*6 fwd + 30*11 + 12*6 + 7*3 dX) + 472 * (8 - 1) dW + 2*472
    #     = 8 * (449 + 423) + 3304 + 944 = 11224
    a = cost.analytic(cost.architecture(load("tiny_mlp.yaml")), "sgd")
    assert (a.fp_mul, a.fp_add) == (12272, 11224)
    # Memory: 4 * (472 + act 8*(12+7+4) + max P 360 + input 8*30) = 4 * (472 + 184 + 360 + 240) = 5024
    assert a.fp_bytes == 5024


def test_conv_counts_of_tiny_cnn_by_hand() -> None:
    # Block 0: conv 1->3, 3x3, pad 1 on 9x9 (H_o 9), learning max pool (8, 8) -> 2x2 windows; batch 4.
    #   forward: wide = round_up(8*11 + 9, 16) = 112 positions per kernel row: 4*3*1*9*112 = 12096
    #   G: only the argmax cell of each of the 4 windows, all 9 taps: 3*4*4*1*9 = 432 (dense: 81 cells)
    # Block 1: conv 3->4, 3x3, pad 0 on 4x4 (H_o 2), no learning pool: wide = round_up(1*4 + 2, 16) = 16:
    #   forward 4*4*3*9*16 = 6912; G over the valid taps: L = 2+2+2 = 6, 4*4*3*6*6 = 1728 products
    program, report = analyse(load("tiny_cnn.yaml"))
    rows = cost.count_ops(program, report)
    assert rows[("forward", "conv_scale")]["mul32"] == 12096 + 6912
    assert rows[("backward", "conv_grad_sgd_max")]["mul32"] == 432
    assert rows[("backward", "conv_grad_sgd")]["mul32"] == 1728
    assert rows[("backward", "conv_grad_sgd")]["add64"] == 1728 + 4*4*3*9  # + row[...] += sum per tap


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nitrogen", "report", *args], cwd=ROOT, capture_output=True,
                          text=True)


def test_cli_table() -> None:
    proc = _run("specs/mlp1_mnist.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "MLP1_MNIST_CTX_BYTES = 246 624 bytes" in proc.stdout
    assert "FP32 backprop + SGD, paper method" in proc.stdout


def test_cli_json() -> None:
    proc = _run("specs/mlp1_mnist.yaml", "--json", "--fp-optimizer", "adam")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert (d["schema"], d["mode"], d["fp_optimizer"]) == ("nitrogen.cost/1", "plan", "adam")
    assert d["ram"]["total"] == 246624
    assert set(d["ops"]["total"]) == set(cost.COLUMNS)
    assert set(d["energy"]) == set(d["memory"]) == {"nitrogen", "nitro_analytic", "fp32"}


def test_cli_paper() -> None:
    proc = _run("specs/vgg11b_cifar10.yaml", "--paper", "--fp-optimizer", "adam", "--json")
    assert proc.returncode == 0, proc.stderr
    assert f"{json.loads(proc.stdout)['memory_reduction_pct']:.2f}" == "76.14"
    proc = _run("specs/mlp1_mnist.yaml", "--paper")
    assert proc.returncode == 0 and "29.50 %" in proc.stdout


def test_cli_bad_spec_path() -> None:
    proc = _run("specs/no_such_spec.yaml")
    assert proc.returncode == 1
    assert "error[E001]: no such spec file" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_usage_errors() -> None:
    proc = _run("specs/mlp1_mnist.yaml", "--input-features", "1024")
    assert proc.returncode == 2 and "--paper only" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run("specs/tiny_cnn.yaml", "--paper", "--input-features", "1024")
    assert proc.returncode == 2 and "MLPs only" in proc.stderr and "Traceback" not in proc.stderr
