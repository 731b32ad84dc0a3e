"""Lowering, checked without a C compiler against values typed here from docs/semantics.md (the NITRO-ReLU
table of #nitro-relu and the bounds of #initialisation) and the paper's MLPs."""

from __future__ import annotations

import pytest

from nitrogen.ir import OpKind
from nitrogen.lower import isqrt_floor, kaiming_bound, lower, relu_table
from nitrogen.spec import with_semantics

from conftest import load


@pytest.mark.parametrize("n, root", [(9, 3), (27, 5), (784, 28), (1152, 33), (3000, 54), (4608, 67), (0, 0), (1, 1)])
def test_isqrt(n: int, root: int) -> None:
    assert isqrt_floor(n) == root


def test_kaiming_table_of_section_8() -> None:
    table = {9: 64, 27: 60, 50: 43, 100: 30, 200: 21, 512: 13, 784: 10, 1024: 9, 1152: 9, 2048: 6, 2304: 6,
             3000: 5, 3072: 5, 3584: 5, 4096: 4, 4608: 4}
    assert {fan_in: kaiming_bound(fan_in, 1372) for fan_in in table} == table


def test_relu_table_examples_of_section_4_4() -> None:
    t = relu_table(4)
    assert [t[z + 127] for z in (-127, -5, -4, -3, 0, 1, 127)] == [-67, -37, -37, -36, -36, -35, 91]
    ranges = {3: (-73, 96), 4: (-67, 91), 5: (-63, 89), 7: (-58, 87), 8: (-57, 85), 10: (-55, 84),
              15: (-52, 83), 16: (-51, 83), 20: (-51, 82)}
    assert {s: (min(relu_table(s)), max(relu_table(s))) for s in ranges} == ranges


def _layer_constants(name: str) -> list[tuple[int, int]]:
    """(SF, B) of every linear in construction order, as the lowering computed them."""
    program = lower(load(name))
    sf = {op.ins[1]: op.int_attr("sf") for op in program.train if op.kind is OpKind.LINEAR_SCALE}
    return [(sf[p.tensor], p.init_bound) for p in program.params]


def test_mlp1_and_mlp3_constants_of_section_9_1() -> None:
    # order: fwd_1, learn_1, fwd_2, learn_2, ..., out
    assert _layer_constants("mlp1_mnist.yaml") == [(200704, 10), (25600, 30), (25600, 30), (12800, 43), (12800, 43)]
    assert _layer_constants("mlp2_fmnist.yaml") == [(200704, 10), (51200, 21), (51200, 21), (25600, 30),
                                                    (25600, 30), (12800, 43), (12800, 43)]
    assert _layer_constants("mlp3_mnist.yaml") == [(200704, 10)] + [(262144, 9)] * 6
    assert _layer_constants("mlp4_cifar10.yaml") == [(786432, 5)] + [(768000, 5)] * 6


def test_fused_schedule_order() -> None:
    """Each block's local step follows its forward; the output layer comes last."""
    kinds = [(op.kind.value, op.outs[0]) for op in lower(load("mlp1_mnist.yaml")).train]
    assert kinds[:8] == [("linear_scale", "b0_z"), ("nitro_relu", "b0_h"), ("linear_scale", "b0_l_logits"),
                         ("loss_grad", "b0_l_delta"), ("linear_dx", "b0_l_dx"), ("linear_grad_sgd", "b0_l_w"),
                         ("nitro_relu_backward", "b0_dz"), ("linear_grad_sgd", "b0_w")]
    assert kinds[-3:] == [("linear_scale", "out_logits"), ("loss_grad", "out_delta"), ("linear_grad_sgd", "out_w")]


def test_amplification_and_decay_per_layer() -> None:
    program = lower(load("mlp1_mnist.yaml"))
    updates = {op.outs[0]: (op.attr("amp"), op.attr("decay_inv")) for op in program.train
               if op.kind is OpKind.LINEAR_GRAD_SGD}
    assert updates == {"b0_w": (640, 12000), "b0_l_w": (1, 3000), "b1_w": (640, 12000), "b1_l_w": (1, 3000),
                       "out_w": (1, 3000)}


def test_reference_mode_uses_gain_1372_everywhere() -> None:
    spec = load("tiny_mlp.yaml")  # slopes 1/3 and 1/20
    nitro = [p.init_bound for p in lower(spec).params]
    ref = [p.init_bound for p in lower(with_semantics(spec, "reference")).params]
    # fan-ins 30, 12, 12, 7, 7; gain(3) = 1342, gain(20) = 1412, reference 1372
    assert nitro == [kaiming_bound(30, 1342), kaiming_bound(12, 1342), kaiming_bound(12, 1412),
                     kaiming_bound(7, 1412), kaiming_bound(7, 1412)]
    assert ref == [kaiming_bound(n, 1372) for n in (30, 12, 12, 7, 7)]


def test_evaluation_never_reads_the_augmented_input() -> None:
    program = lower(load("mlp3_mnist.yaml"))
    assert program.train[0].kind is OpKind.AUGMENT and program.train[1].ins[0] == "x_aug"
    assert program.infer[0].ins[0] == "x"
