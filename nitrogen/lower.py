"""Lowering: spec.Model -> ir.Program.

Resolves shapes and every per-layer constant (scaling factors, Kaiming bounds, NITRO-ReLU
tables, amplification, decay), names every tensor of the training step, and lays the ops
out in the fused schedule of semantics 6.5: each block's local step runs right after the
block's forward, so only that block's working tensors are live (they share one union).
Types that depend on worst cases are left to bounds.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from . import __version__
from .errors import Span
from .ir import I8, I32, U8, U32, Op, OpKind, Param, Program, Role, Store, Tensor
from .spec import RELU_TABLE, LinearBlock, Model, Semantics

GAIN_REFERENCE = 1372  # the published implementation uses this gain for every layer (semantics 8)


def isqrt_floor(n: int) -> int:
    """floor(sqrt(n)) by Newton's method on integers (semantics 2.1)."""
    x, y = n, (n + 1) // 2
    while y < x:
        x, y = y, (y + n // y) // 2
    return x


def kaiming_bound(fan_in: int, gain_milli: int) -> int:
    """Integer Kaiming-uniform bound B(fan_in) (semantics 8)."""
    return min(64, (gain_milli * 128 * 1732) // (isqrt_floor(fan_in) * 10**6))


def relu_table(slope_inv: int) -> tuple[int, ...]:
    """NITRO-ReLU output for every scaling output z in [-127, 127], index z + 127 (semantics 4.4)."""
    mu = RELU_TABLE[slope_inv][0]
    out = []
    for z in range(-127, 128):
        neg = min(z, 0)
        neg_part = -((-neg) // slope_inv)  # truncation toward zero of a non-positive value
        out.append(max(z, 0) + neg_part - mu)
    return tuple(out)


class _Ctx:
    """Accumulates tensors and ops while walking the layers."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.ref = model.semantics is Semantics.REFERENCE
        self.bs = model.train.batch_size
        self.classes = model.num_classes
        self.tensors: dict[str, Tensor] = {}
        self.init: list[Op] = []
        self.train: list[Op] = []
        self.infer: list[Op] = []
        self.params: list[Param] = []

    def tensor(self, name: str, shape: tuple[int, ...], role: Role, dtype: object = None,
               store: Store = Store.EXACT, slot: str = "", group: str = "", doc: str = "",
               span: Span | None = None, export: str = "") -> str:
        self.tensors[name] = Tensor(name, shape, role, dtype, store, slot, group, export, doc, span)  # type: ignore[arg-type]
        return name

    @property
    def wrap(self) -> Store:
        """Accumulators, gradients and input gradients: exact in nitrogen, wrapped in reference."""
        return Store.WRAP if self.ref else Store.EXACT

    def weight(self, name: str, export: str, n_out: int, n_in: int, gain: int, span: Span, doc: str) -> str:
        store = Store.WRAP if self.ref else Store.SATURATE
        self.tensor(name, (n_out, n_in), Role.PARAM, I32 if self.ref else None, store, doc=doc, span=span,
                    export=export)
        bound = kaiming_bound(n_in, GAIN_REFERENCE if self.ref else gain)
        self.params.append(Param(name, export, n_in, bound))
        self.init.append(Op(OpKind.KAIMING_INIT, (), (name,), (), (("bound", bound), ("count", n_out * n_in)),
                            f"{export}: integer Kaiming-uniform, fan_in {n_in}", span))
        return name

    def linear_scale(self, x: str, w: str, y: str, acc: str, n_in: int, n_out: int, label: str, span: Span,
                     *, infer: bool) -> None:
        op = Op(OpKind.LINEAR_SCALE, (x, w), (y,), (acc,),
                (("n_in", n_in), ("n_out", n_out), ("sf", 256 * n_in)), label, span)
        self.tensor(acc, (self.bs, n_out), Role.TEMP, I32 if self.ref else None, self.wrap,
                    doc=f"{label}: accumulator", span=span)
        self.train.append(op)
        if infer:
            self.infer.append(op)

    def loss_grad(self, logits: str, delta: str, loss: str, stat: int, group: str, label: str, span: Span) -> None:
        self.tensor(delta, (self.bs, self.classes), Role.SCRATCH, I8 if self.ref else None,
                    Store.WRAP if self.ref else Store.EXACT, "scratch", group, f"{label}: loss gradient", span)
        self.tensor(loss, (), Role.TEMP, doc=f"{label}: sum of squared errors", span=span)
        self.train.append(Op(OpKind.LOSS_GRAD, (logits, "labels"), (delta,), (loss,),
                             (("classes", self.classes), ("target", self.model.target_value), ("stat", stat)),
                             label, span))

    def grad_sgd(self, prefix: str, delta: str, x: str, w: str, n_in: int, n_out: int, amp: int, decay: int,
                 group: str, label: str, span: Span) -> None:
        grad, g, wnew, row = f"{prefix}_grad", f"{prefix}_g", f"{prefix}_wnew", f"{prefix}_row"
        self.tensor(grad, (n_out, n_in), Role.TEMP, I32 if self.ref else None, self.wrap,
                    doc=f"{label}: weight gradient summed over the batch", span=span)
        self.tensor(g, (n_out, n_in), Role.TEMP, doc=f"{label}: tdiv(G, lr_inv*amp)", span=span)
        self.tensor(wnew, (n_out, n_in), Role.TEMP, doc=f"{label}: W - g - tdiv(W, decay_inv) before storing",
                    span=span)
        # In reference mode the row accumulates modulo 2^32, which C defines only for unsigned types.
        self.tensor(row, (n_in,), Role.SCRATCH, U32 if self.ref else None, self.wrap, "scratch", group,
                    f"{label}: one output row of the weight gradient", span)
        store = "wrap" if self.ref else "sat"
        self.train.append(Op(OpKind.LINEAR_GRAD_SGD, (delta, x, w), (w,), (grad, g, wnew, row),
                             (("n_in", n_in), ("n_out", n_out), ("amp", amp), ("decay_inv", decay),
                              ("store", store)), label, span))


def lower_linear(ctx: _Ctx, layer: LinearBlock, index: int, x: str, n_in: int) -> tuple[str, int]:
    """One linear local-loss block; returns its output tensor and width."""
    b, n_out, span, bs, classes = f"b{index}", layer.out_features, layer.span, ctx.bs, ctx.classes
    train = ctx.model.train
    gain = RELU_TABLE[layer.slope_inv][1]
    path = f"blocks.{index}"
    w = ctx.weight(f"{b}_w", f"{path}.forward.weight", n_out, n_in, gain, span,
                   f"block {index} forward linear {n_in}->{n_out}")
    lw = ctx.weight(f"{b}_l_w", f"{path}.learning.weight", classes, n_out, gain, span,
                    f"block {index} learning linear {n_out}->{classes}")
    z = ctx.tensor(f"{b}_z", (bs, n_out), Role.SCRATCH, I8, slot="scratch", group=b,
                   doc=f"block {index} NITRO-Scaling output (NITRO-ReLU input)", span=span)
    h = ctx.tensor(f"{b}_h", (bs, n_out), Role.ACT, I8, slot=f"act{index % 2}", group=b,
                   doc=f"block {index} NITRO-ReLU output", span=span)
    ctx.linear_scale(x, w, z, f"{b}_acc", n_in, n_out, f"block {index} forward linear {n_in}->{n_out}", span,
                     infer=True)
    relu = Op(OpKind.NITRO_RELU, (z,), (h,), (),
              (("slope_inv", layer.slope_inv), ("mu", RELU_TABLE[layer.slope_inv][0]),
               ("table", relu_table(layer.slope_inv))), f"block {index} NITRO-ReLU 1/{layer.slope_inv}", span)
    ctx.train.append(relu)
    ctx.infer.append(relu)
    # Local step (semantics 6.3), fused right after the forward; one step in both modes for MLPs (6.4).
    logits = ctx.tensor(f"{b}_l_logits", (bs, classes), Role.SCRATCH, I8, slot="scratch", group=b,
                        doc=f"block {index} local logits", span=span)
    ctx.linear_scale(h, lw, logits, f"{b}_l_acc", n_out, classes, f"block {index} learning linear", span,
                     infer=False)
    delta = f"{b}_l_delta"
    ctx.loss_grad(logits, delta, f"{b}_l_loss", index, b, f"block {index} local loss", span)
    dx = ctx.tensor(f"{b}_l_dx", (bs, n_out), Role.SCRATCH, I32 if ctx.ref else None, ctx.wrap, "scratch", b,
                    f"block {index} learning input gradient", span)
    ctx.train.append(Op(OpKind.LINEAR_DX, (delta, lw), (dx,), (), (("n_in", n_out), ("n_out", classes)),
                        f"block {index} learning input gradient (before its update)", span))
    ctx.grad_sgd(f"{b}_l", delta, h, lw, n_out, classes, 1, train.subnet_decay_inv, b,
                 f"block {index} learning linear update", span)
    dz = ctx.tensor(f"{b}_dz", (bs, n_out), Role.SCRATCH, I32 if ctx.ref else None, ctx.wrap, "scratch", b,
                    f"block {index} NITRO-ReLU backward", span)
    ctx.train.append(Op(OpKind.NITRO_RELU_BACKWARD, (dx, z), (dz,), (),
                        (("slope_inv", layer.slope_inv), ("saturated_divisor", 2147483647 if ctx.ref else 0)),
                        f"block {index} NITRO-ReLU backward", span))
    ctx.grad_sgd(b, dz, x, w, n_in, n_out, train.amp_model, train.fwd_decay_inv, b,
                 f"block {index} forward linear update", span)
    return h, n_out


LOWER: dict[str, Callable[[_Ctx, LinearBlock, int, str, int], tuple[str, int]]] = {"linear": lower_linear}


def lower(model: Model) -> Program:
    ctx = _Ctx(model)
    bs, classes = ctx.bs, ctx.classes
    c, hgt, wid = model.input_shape
    n = model.input_len
    ctx.tensor("x", (bs, n), Role.ARG, I8, doc="input batch, NCHW flattened")
    ctx.tensor("labels", (bs,), Role.ARG, U8, doc="class labels")
    x = "x"
    aug = model.train.augment
    if aug.crop_pad or aug.flip:
        x = ctx.tensor("x_aug", (bs, n), Role.ACT, I8, slot="aug", group="aug", doc="augmented input batch")
        ctx.train.append(Op(OpKind.AUGMENT, ("x",), (x,), (),
                            (("channels", c), ("height", hgt), ("width", wid), ("crop_pad", aug.crop_pad),
                             ("flip", aug.flip), ("per_sample", not ctx.ref)),
                            "augmentation: random crop and flip", model.span("train.augment")))
    for index, layer in enumerate(model.layers):
        x, n = LOWER[layer.kind](ctx, layer, index, x, n)
    span = model.span("num_classes")
    train = model.train
    w = ctx.weight("out_w", "output.weight", classes, n, _output_gain(model), span, f"output linear {n}->{classes}")
    logits = ctx.tensor("out_logits", (bs, classes), Role.SCRATCH, I8, slot="scratch", group="out",
                        doc="output logits", span=span)
    ctx.linear_scale(x, w, logits, "out_acc", n, classes, "output linear", span, infer=True)
    ctx.loss_grad(logits, "out_delta", "out_loss", -1, "out", "global loss", span)
    ctx.grad_sgd("out", "out_delta", x, w, n, classes, 1, train.subnet_decay_inv, "out", "output linear update",
                 span)
    amps = [train.amp_model, 1]
    lr_inv_max = (1 << 62) // max(amps)  # semantics 7.2: a reduction that makes any A exceed 2^62 is refused
    param_count = sum(ctx.tensors[p.tensor].size for p in ctx.params)
    constants = (("BATCH", bs), ("CHANNELS", c), ("HEIGHT", hgt), ("WIDTH", wid), ("INPUT_LEN", model.input_len),
                 ("N_CLASSES", classes), ("N_BLOCKS", len(model.layers)), ("TARGET", model.target_value),
                 ("PARAMS_COUNT", param_count), ("LR_INV_INIT", train.lr_inv), ("LR_INV_MAX", lr_inv_max))
    # Evaluation never augments (semantics 6.6): the first block reads the raw input.
    infer = tuple(replace(op, ins=tuple("x" if name == "x_aug" else name for name in op.ins)) for op in ctx.infer)
    return Program(model.name, str(model.semantics), tuple(ctx.tensors.values()), tuple(ctx.init),
                   tuple(ctx.train), infer, tuple(ctx.params), constants,
                   tuple(f"b{i}" for i in range(len(model.layers))), model.sha256, model.weight_bits)


def _output_gain(model: Model) -> int:
    """Decision (semantics 8 is silent): the output layer uses the gain of the last block's slope."""
    slope = model.layers[-1].slope_inv if model.layers else 4
    return RELU_TABLE[slope][1]


__all__ = ["lower", "kaiming_bound", "isqrt_floor", "relu_table", "LOWER", "__version__"]
