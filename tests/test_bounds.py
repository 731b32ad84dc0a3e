"""Bounds pass: worst cases checked against values worked out by hand with the interval rules of
docs/semantics.md#bounds-and-c-types, type choices, and diagnostics for specs whose declared widths cannot hold a
worst case."""

from __future__ import annotations

import pytest

from nitrogen.bounds import bits_needed, check_bounds
from nitrogen.errors import NitrogenError
from nitrogen.ir import I8, I16, I32, I64
from nitrogen.lower import lower
from nitrogen.spec import with_semantics

from conftest import load, spec_from_text


def report(name: str, semantics: str | None = None):
    return check_bounds(lower(with_semantics(load(name), semantics)))


def test_bits_needed() -> None:
    assert bits_needed(-128, 127) == 8
    assert bits_needed(-129, 0) == 9
    assert bits_needed(0, 128) == 9
    assert bits_needed(-(1 << 31), (1 << 31) - 1) == 32
    assert bits_needed(0, 9, signed=False) == 4 and bits_needed(0, 255, signed=False) == 8
    assert bits_needed(0, 0, signed=False) == 1


def test_unsigned_tensors_need_no_sign_bit() -> None:
    """`nitrogen check` said labels [0, 9] need 5 bits: it counted a sign bit for a uint8_t tensor."""
    r = report("mlp1_mnist.yaml")
    assert (r["labels"].exact_lo, r["labels"].exact_hi, r["labels"].ctype.ctype, r["labels"].bits) == \
        (0, 9, "uint8_t", 4)
    argmax = report("tiny_cnn.yaml")["b0_lp_arg"]  # a learning pool's argmax index, [0, 63]
    assert (argmax.ctype.ctype, argmax.bits) == ("uint8_t", 6)
    assert r["b0_z"].bits == 8  # signed tensors are unchanged: [-127, 127] needs 8


def test_mlp1_nitrogen_worst_cases_by_hand() -> None:
    r = report("mlp1_mnist.yaml")
    wmax = 32767
    # forward accumulator with int8 data input, M = 784: M * 128 * Wmax = 3.29e9 -> int64
    assert (r["b0_acc"].lo, r["b0_acc"].hi) == (-784 * 128 * wmax, 784 * 128 * wmax) and r["b0_acc"].ctype == I64
    # NL input, M = 100: M * 91 * Wmax = 2.98e8 -> int32
    assert r["b1_acc"].hi == 100 * 91 * wmax and r["b1_acc"].ctype == I32
    # learning input gradient: C * (127 + T) * Wmax = 5.21e7 -> int32
    assert r["b0_l_dx"].hi == 10 * 159 * wmax and r["b0_l_dx"].ctype == I32
    # forward-linear weight gradient: bs * C * (127 + T) * Wmax * max|x| = 4.27e11 -> int64
    assert r["b0_grad"].hi == 64 * 10 * 159 * wmax * 128 and r["b0_grad"].ctype == I64
    # learning and output weight gradients: bs * (127 + T) * max|x| = 926 016 -> int32
    assert r["b0_l_grad"].lo == -926016 and r["out_grad"].ctype == I32
    # the nitrogen loss gradient is exact: [-127 - T, 127], int16
    assert (r["out_delta"].lo, r["out_delta"].hi, r["out_delta"].ctype) == (-159, 127, I16)
    # scaling outputs and NITRO-ReLU outputs are int8 with their fixed ranges (docs/semantics.md#nitro-relu)
    assert (r["b0_z"].lo, r["b0_z"].hi, r["b0_z"].ctype) == (-127, 127, I8)
    assert (r["b0_h"].lo, r["b0_h"].hi) == (-67, 91)
    assert (r["b0_w"].lo, r["b0_w"].hi, r["b0_w"].ctype) == (-wmax, wmax, I16)


def test_reference_mode_wraps_to_int32() -> None:
    r = report("mlp1_mnist.yaml", "reference")
    acc = r["b0_acc"]
    assert acc.ctype == I32 and (acc.lo, acc.hi) == (-(1 << 31), (1 << 31) - 1)
    assert acc.exact_hi > 1 << 31  # the exact sum can exceed int32; reference wraps it
    delta = r["out_delta"]
    assert delta.ctype == I8 and (delta.lo, delta.hi) == (-128, 127) and delta.exact_lo == -159
    assert r["b0_w"].ctype == I32


def test_weight_bits_choose_storage() -> None:
    r = report("tiny_saturate.yaml")
    assert r["b0_w"].ctype == I8 and (r["b0_w"].lo, r["b0_w"].hi) == (-127, 127)
    # Narrow weights narrow every forward range (hand-derived chain, slope 1/8, mu 42, 4x4 input):
    assert r["b0_acc"].hi == 16 * 128 * 127                          # 260 096
    assert (r["b0_z"].lo, r["b0_z"].hi) == (-63, 63)                 # tdiv(260 096, 256 * 16)
    assert (r["b0_h"].lo, r["b0_h"].hi) == (-8 - 42 + 1, 63 - 42)    # tdiv(-63, 8) - 42 = -49
    assert r["out_acc"].hi == 10 * 49 * 127                          # 62 230
    assert (r["out_logits"].lo, r["out_logits"].hi) == (-24, 24)     # tdiv(62 230, 2560)
    assert r["out_delta"].lo == -24 - 127                             # T = 127


def test_worst_case_beyond_int64_is_an_error_at_the_layer() -> None:
    text = ("name: huge\ninput: [1, 1, 8]\nnum_classes: 255\ntarget_value: 127\nweight_bits: 32\n"
            "layers:\n  - {kind: linear, out_features: 1000}\ntrain: {batch_size: 65536}\n")
    with pytest.raises(NitrogenError) as exc:
        check_bounds(lower(spec_from_text(text)))
    diag = exc.value.diagnostics[0]
    assert diag.code == "E301"
    assert (diag.span.line, diag.span.col) == (7, 5)
    assert "no C integer type holds it" in diag.message and diag.hint


def test_vgg8b_conv_worst_cases_by_hand() -> None:
    """Worst cases of the convs (b = 16, Wmax = 32767, C = 10, T = 32, bs = 64), values worked by hand."""
    r = report("vgg8b_cifar10.yaml")
    wmax = 32767
    # Block 0 reads the int8 data input: M = 27 terms of 128 * Wmax, 1.13e8 -> int32, no chunks.
    assert (r["b0_acc"].exact_lo, r["b0_acc"].exact_hi) == (-27 * 128 * wmax, 27 * 128 * wmax)
    assert r["b0_acc"].ctype == I32
    # Block 1 reads NL outputs in [-67, 91]: M = 1152, 1152 * 91 * Wmax = 3.44e9 -> int64, summed in exact
    # int32 chunks of floor((2^31 - 1) / (91 * Wmax)) = 720 terms, i.e. 80 whole channels of 3x3 taps.
    assert r["b1_acc"].exact_hi == 1152 * 91 * wmax and r["b1_acc"].ctype == I64
    assert r.chunk("b1_acc") == 80
    # Learning input gradient: C * (127 + T) * Wmax = 5.21e7 -> int32 (C <= 412).
    assert r["b0_l_dx"].exact_hi == 10 * 159 * wmax and r["b0_l_dx"].ctype == I32
    # Forward-conv G of block 0: with max routing only the argmax cell of each learning-pool window
    # (dh x dw = 4 x 8 per channel) carries a gradient, so bs * 32 terms of |dz| * |x| = 5.21e7 * 128;
    # the table's dense worst case bs * H_o^2 * ... = 4.37e14 bounds it. int64 either way.
    dz = 10 * 159 * wmax
    assert r["b0_grad"].exact_hi == 64 * (4 * 8) * dz * 128 and r["b0_grad"].ctype == I64
    assert r["b0_grad"].exact_hi <= 64 * 32 * 32 * dz * 128 < 4.38e14
    # reference mode: every accumulator and gradient is an int32 that wraps.
    rr = report("vgg8b_cifar10.yaml", "reference")
    assert {rr[n].ctype for n in ("b1_acc", "b1_grad", "b1_l_dx")} == {I32}
