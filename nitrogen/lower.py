"""Lowering: spec.Model -> ir.Program.

Resolves shapes and every per-layer constant (scaling factors, Kaiming bounds, NITRO-ReLU
tables, amplification, decay), names every tensor of the training step, and lays the ops
out in the fused schedule (docs/semantics.md#the-training-step): each block's local step runs right after the
block's forward, so only that block's working tensors are live (they share one union).
Types that depend on worst cases are left to bounds.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from . import __version__
from .errors import Span
from .ir import (I8, I16, I32, U8, U16, U32, Attr, IntType, LayerConstants, Op, OpKind, Param, Program, Role, Store,
                 Tensor)
from .spec import (RELU_TABLE, AvgPool, ConvBlock, Dropout, LinearBlock, MaxPool, Model, Semantics, Stage,
                   dropout_scale, learning_pool_search, stages)

# The published implementation uses this gain for every layer (docs/semantics.md#kaiming-gain-1372).
GAIN_REFERENCE = 1372


def isqrt_floor(n: int) -> int:
    """floor(sqrt(n)) by Newton's method on integers (docs/semantics.md#integer-primitives)."""
    x, y = n, (n + 1) // 2
    while y < x:
        x, y = y, (y + n // y) // 2
    return x


def kaiming_bound(fan_in: int, gain_milli: int) -> int:
    """Integer Kaiming-uniform bound B(fan_in) (docs/semantics.md#initialisation)."""
    return min(64, (gain_milli * 128 * 1732) // (isqrt_floor(fan_in) * 10**6))


def relu_table(slope_inv: int) -> tuple[int, ...]:
    """NITRO-ReLU output for every scaling output z in [-127, 127], index z + 127 (docs/semantics.md#nitro-relu)."""
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
        self.amps: list[int] = []
        self.layers: list[LayerConstants] = []
        self.alias: dict[str, str] = {"x_aug": "x"}  # evaluation reads the raw input and skips dropouts
        self.act_parity = 0
        self.drop_parity = 0  # dropouts in front of a conv block or 1x1 pool: their own two slots
        self.walk: tuple[Stage, ...] = ()
        self.fused_pools: dict[int, str] = {}  # stage index of a feature pool run inside a conv block -> output

    def tensor(self, name: str, shape: tuple[int, ...], role: Role, dtype: object = None,
               store: Store = Store.EXACT, slot: str = "", group: str = "", doc: str = "",
               span: Span | None = None, export: str = "") -> str:
        self.tensors[name] = Tensor(name, shape, role, dtype, store, slot, group, export, doc, span)  # type: ignore[arg-type]
        return name

    def forward(self, op: Op) -> None:
        """An op of the forward pass: run in training and in evaluation."""
        self.train.append(op)
        self.infer.append(op)

    @property
    def wrap(self) -> Store:
        """Accumulators, gradients and input gradients: exact in nitrogen, wrapped in reference."""
        return Store.WRAP if self.ref else Store.EXACT

    @property
    def acc_type(self) -> IntType | None:
        return I32 if self.ref else None

    def weight(self, name: str, export: str, shape: tuple[int, ...], fan_in: int, gain: int, span: Span,
               doc: str) -> str:
        store = Store.WRAP if self.ref else Store.SATURATE
        self.tensor(name, shape, Role.PARAM, I32 if self.ref else None, store, doc=doc, span=span, export=export)
        bound = kaiming_bound(fan_in, GAIN_REFERENCE if self.ref else gain)
        self.params.append(Param(name, export, fan_in, bound))
        count = 1
        for d in shape:
            count *= d
        self.init.append(Op(OpKind.KAIMING_INIT, (), (name,), (), (("bound", bound), ("count", count)),
                            f"{export}: integer Kaiming-uniform, fan_in {fan_in}", span))
        return name

    def linear_scale(self, x: str, w: str, y: str, acc: str, n_in: int, n_out: int, label: str, span: Span,
                     *, infer: bool) -> None:
        op = Op(OpKind.LINEAR_SCALE, (x, w), (y,), (acc,),
                (("n_in", n_in), ("n_out", n_out), ("sf", 256 * n_in)), label, span)
        self.tensor(acc, (self.bs, n_out), Role.TEMP, self.acc_type, self.wrap, doc=f"{label}: accumulator",
                    span=span)
        if infer:
            self.forward(op)
        else:
            self.train.append(op)

    def loss_grad(self, logits: str, delta: str, loss: str, stat: int, group: str, label: str, span: Span) -> None:
        """stat: block index for the statistics, -1 for the global loss, -2 for a repeated local step."""
        self.tensor(delta, (self.bs, self.classes), Role.SCRATCH, I8 if self.ref else None,
                    Store.WRAP if self.ref else Store.EXACT, "scratch", group, f"{label}: loss gradient", span)
        self.tensor(loss, (), Role.TEMP, doc=f"{label}: sum of squared errors", span=span)
        self.train.append(Op(OpKind.LOSS_GRAD, (logits, "labels"), (delta,), (loss,),
                             (("classes", self.classes), ("target", self.model.target_value), ("stat", stat)),
                             label, span))

    def sgd_temps(self, prefix: str, shape: tuple[int, ...], row: int, group: str, label: str,
                  span: Span) -> tuple[str, str, str, str]:
        grad, g, wnew, row_name = f"{prefix}_grad", f"{prefix}_g", f"{prefix}_wnew", f"{prefix}_row"
        self.tensor(grad, shape, Role.TEMP, self.acc_type, self.wrap,
                    doc=f"{label}: weight gradient summed over the batch", span=span)
        self.tensor(g, shape, Role.TEMP, doc=f"{label}: tdiv(G, lr_inv*amp)", span=span)
        self.tensor(wnew, shape, Role.TEMP, doc=f"{label}: W - g - tdiv(W, decay_inv) before storing", span=span)
        # In reference mode the row accumulates modulo 2^32, which C defines only for unsigned types.
        self.tensor(row_name, (row,), Role.SCRATCH, U32 if self.ref else None, self.wrap, "scratch", group,
                    f"{label}: one output row of the weight gradient", span)
        return grad, g, wnew, row_name

    def grad_sgd(self, prefix: str, delta: str, x: str, w: str, n_in: int, n_out: int, amp: int, decay: int,
                 group: str, label: str, span: Span) -> None:
        temps = self.sgd_temps(prefix, (n_out, n_in), n_in, group, label, span)
        self.amps.append(amp)
        self.train.append(Op(OpKind.LINEAR_GRAD_SGD, (delta, x, w), (w,), temps,
                             (("n_in", n_in), ("n_out", n_out), ("amp", amp), ("decay_inv", decay),
                              ("store", "wrap" if self.ref else "sat")), label, span))

    def relu(self, z: str, h: str, slope: int, label: str, span: Span,
             loop: tuple[tuple[str, Attr], ...] = ()) -> None:
        self.forward(Op(OpKind.NITRO_RELU, (z,), (h,), (),
                        (("slope_inv", slope), ("mu", RELU_TABLE[slope][0]), ("table", relu_table(slope))) + loop,
                        label, span))

    def learning_head(self, b: str, index: int, d: int, gain: int, span: Span) -> tuple[str, str]:
        """The learning linear D -> C of block `b` (drawn right after the forward weight,
        docs/semantics.md#initialisation) and its input-gradient buffer; returns (weight, input gradient)."""
        classes, bs = self.classes, self.bs
        lw = self.weight(f"{b}_l_w", f"blocks.{index}.learning.weight", (classes, d), d, gain, span,
                         f"block {index} learning linear {d}->{classes}")
        return lw, self.tensor(f"{b}_l_dx", (bs, d), Role.SCRATCH, self.acc_type, self.wrap, "scratch", b,
                               f"block {index} learning input gradient", span)

    def local_linear(self, b: str, index: int, p: str, lw: str, dx: str, d: int, stat: int, span: Span) -> None:
        """The learning-layer half of a local step (docs/semantics.md#the-training-step): logits, loss, input gradient,
        update."""
        bs, classes = self.bs, self.classes
        logits = self.tensor(f"{b}_l_logits", (bs, classes), Role.SCRATCH, I8, slot="scratch", group=b,
                             doc=f"block {index} local logits", span=span)
        self.linear_scale(p, lw, logits, f"{b}_l_acc", d, classes, f"block {index} learning linear", span,
                          infer=False)
        delta = f"{b}_l_delta"
        self.loss_grad(logits, delta, f"{b}_l_loss", stat, b, f"block {index} local loss", span)
        self.train.append(Op(OpKind.LINEAR_DX, (delta, lw), (dx,), (), (("n_in", d), ("n_out", classes)),
                             f"block {index} learning input gradient (before its update)", span))
        self.grad_sgd(f"{b}_l", delta, p, lw, d, classes, 1, self.model.train.subnet_decay_inv, b,
                      f"block {index} learning linear update", span)


def _act(ctx: _Ctx, st: Stage, name: str, size: int, dtype: IntType | None, doc: str) -> str:
    """An activation handed to the next item. Each one lives while its producer runs and until its consumer
    is done, so consecutive ones alternate between two slots (a fused conv block and its feature pool hand
    over one tensor: the pool's output)."""
    group = name.rsplit("_", 1)[0]
    slot = f"act{ctx.act_parity}"
    ctx.act_parity ^= 1
    return ctx.tensor(name, (ctx.bs, size), Role.ACT, dtype, slot=slot, group=group, doc=doc, span=st.layer.span)


VECTOR = 16  # int32 lanes of a 512-bit vector


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def _size(shape: tuple[int, int, int]) -> int:
    return shape[0] * shape[1] * shape[2]


def lower_linear(ctx: _Ctx, st: Stage, x: str) -> str:
    """One linear local-loss block; returns its output tensor."""
    layer = st.layer
    assert isinstance(layer, LinearBlock)
    index, n_in, n_out, span, bs = st.block, _size(st.in_shape), layer.out_features, layer.span, ctx.bs
    b = f"b{index}"
    train = ctx.model.train
    gain = RELU_TABLE[layer.slope_inv][1]
    w = ctx.weight(f"{b}_w", f"blocks.{index}.forward.weight", (n_out, n_in), n_in, gain, span,
                   f"block {index} forward linear {n_in}->{n_out}")
    lw, dx = ctx.learning_head(b, index, n_out, gain, span)
    z = ctx.tensor(f"{b}_z", (bs, n_out), Role.SCRATCH, I8, slot="scratch", group=b,
                   doc=f"block {index} NITRO-Scaling output (NITRO-ReLU input)", span=span)
    h = _act(ctx, st, f"{b}_h", n_out, I8, f"block {index} NITRO-ReLU output")
    ctx.linear_scale(x, w, z, f"{b}_acc", n_in, n_out, f"block {index} forward linear {n_in}->{n_out}", span,
                     infer=True)
    ctx.relu(z, h, layer.slope_inv, f"block {index} NITRO-ReLU 1/{layer.slope_inv}", span)
    ctx.layers.append(LayerConstants(b, f"linear {n_in}->{n_out}", 1, 256 * n_in, ctx.params[-2].init_bound,
                                     train.amp_model, 1, (1, 1, 0, 0), n_out, 256 * n_out, ctx.params[-1].init_bound))
    # Local step(s) (docs/semantics.md#the-training-step), fused right after the forward. Reference mode runs two
    # for the linear blocks of a network with a conv block (docs/semantics.md#two-local-steps-per-linear-block-in-cnns);
    # the statistics come from the first.
    steps = 2 if ctx.ref and ctx.model.has_conv else 1
    dz = ctx.tensor(f"{b}_dz", (bs, n_out), Role.SCRATCH, ctx.acc_type, ctx.wrap, "scratch", b,
                    f"block {index} NITRO-ReLU backward", span)
    for r in range(steps):
        ctx.local_linear(b, index, h, lw, dx, n_out, index if r == 0 else -2, span)
        ctx.train.append(Op(OpKind.NITRO_RELU_BACKWARD, (dx, z), (dz,), (),
                            (("slope_inv", layer.slope_inv), ("saturated_divisor", 2147483647 if ctx.ref else 0)),
                            f"block {index} NITRO-ReLU backward", span))
        ctx.grad_sgd(b, dz, x, w, n_in, n_out, train.amp_model, train.fwd_decay_inv, b,
                     f"block {index} forward linear update", span)
    return h


def _pool_attrs(shape: tuple[int, int, int], kh: int, kw: int, ph: int, pw: int, oh: int, ow: int,
                zero_pad: bool) -> tuple[tuple[str, Attr], ...]:
    c, hgt, wid = shape
    return (("channels", c), ("height", hgt), ("width", wid), ("kh", kh), ("kw", kw), ("ph", ph), ("pw", pw),
            ("oh", oh), ("ow", ow), ("zero_pad", zero_pad))


def lower_conv(ctx: _Ctx, st: Stage, x: str) -> str:
    """One conv local-loss block (docs/semantics.md#learning-pools, #the-training-step); returns its output tensor."""
    layer = st.layer
    assert isinstance(layer, ConvBlock)
    index, span, bs = st.block, layer.span, ctx.bs
    cin, hin, _ = st.in_shape
    cout, ho, wo = st.out_shape
    k, pad = layer.kernel, layer.padding
    b = f"b{index}"
    train = ctx.model.train
    gain = RELU_TABLE[layer.slope_inv][1]
    fan_in = cin * k * k
    kh, kw, ph, pw, dh, dw, d = learning_pool_search(cout, ho, layer.decoder_dim)
    pooled = kh > 1 or kw > 1
    amp = train.amp_model * (ho * wo // (kh * kw)) if train.conv_amp_adjust else train.amp_model
    geometry = f"conv {cin}->{cout} {k}x{k}/{pad}, {hin}->{ho}"
    w = ctx.weight(f"{b}_w", f"blocks.{index}.forward.weight", (cout, cin, k, k), fan_in, gain, span,
                   f"block {index} forward {geometry}")
    lw, dx = ctx.learning_head(b, index, d, gain, span)
    plane = ho * wo
    # Memory plan. With a max learning pool (the paper's choice), the backward needs z only at each window's
    # argmax cell, so the forward runs one sample at a time: z (and h, when a feature pool follows and takes
    # its place as the block's output) exist for one sample only, and the learning pool keeps z at the argmax
    # (lz). The feature pool then runs inside the same sample loop. Other learning pools keep the whole z.
    fused = pooled and layer.learning_pool == "max"
    after = ctx.walk[st.index + 1] if st.index + 1 < len(ctx.walk) else None
    pool_next = after if fused and after is not None and isinstance(after.layer, (MaxPool, AvgPool)) else None
    loop: tuple[tuple[str, Attr], ...] = (("sample_loop", b),) if fused else ()
    rows_z = 1 if fused else bs
    z = ctx.tensor(f"{b}_z", (rows_z, cout * plane), Role.SCRATCH, I8, slot="scratch", group=b,
                   doc=f"block {index} NITRO-Scaling output (NITRO-ReLU input)" + (" of one sample" if fused else ""),
                   span=span)
    if pool_next is not None:
        h = ctx.tensor(f"{b}_h", (1, cout * plane), Role.SCRATCH, I8, slot="scratch", group=b,
                       doc=f"block {index} NITRO-ReLU output of one sample", span=span)
    else:
        h = _act(ctx, st, f"{b}_h", cout * plane, I8, f"block {index} NITRO-ReLU output")
    acc = ctx.tensor(f"{b}_acc", (bs, cout * plane), Role.TEMP, ctx.acc_type, ctx.wrap,
                     doc=f"block {index} {geometry}: accumulator", span=span)
    # The forward reads a zero-padded copy of one sample, so every kernel tap is one contiguous loop over
    # the output plane laid out with the padded row stride ("wide" rows; the extra columns are discarded).
    # The loop length is rounded up to a multiple of VECTOR so that compilers vectorise it without a
    # remainder loop (gcc -O2's cost model requires that); the padded copy has a zero tail to match.
    padded = hin + 2 * pad
    wide = _round_up((ho - 1) * padded + ho, VECTOR)
    acc_plane = ctx.tensor(f"{b}_acc_plane", (wide,), Role.SCRATCH, U32 if ctx.ref else None, ctx.wrap, "scratch",
                           b, f"block {index} accumulators of one output channel, rows of stride {padded}", span)
    part = ctx.tensor(f"{b}_acc_part", (wide,), Role.SCRATCH, I32, Store.EXACT, "scratch", b,
                      f"block {index} exact int32 partial sums of one output channel", span)
    # The last tap of the last channel reads up to cin * padded^2 + (wide - exact) - 1.
    exact = (ho - 1) * padded + ho
    xpad = ctx.tensor(f"{b}_xpad", (cin * padded * padded + wide - exact,), Role.SCRATCH, None, Store.EXACT, "scratch", b,
                      f"block {index} zero-padded input of one sample", span)
    ctx.forward(Op(OpKind.CONV_SCALE, (x, w), (z,), (acc, acc_plane, part, xpad),
                   (("c_in", cin), ("c_out", cout), ("size", hin), ("kernel", k), ("pad", pad), ("out", ho),
                    ("sf", 256 * fan_in)) + loop, f"block {index} forward {geometry}", span))
    ctx.relu(z, h, layer.slope_inv, f"block {index} NITRO-ReLU 1/{layer.slope_inv}", span, loop)
    # Local step (docs/semantics.md#the-training-step), fused right after the forward: one step in both modes for
    # conv blocks.
    p, argmax, z_at_arg = h, "", ""
    pool_attrs = _pool_attrs(st.out_shape, kh, kw, ph, pw, dh, dw, ctx.ref)
    if pooled:
        p = ctx.tensor(f"{b}_lp", (bs, d), Role.SCRATCH, I8, slot="scratch", group=b,
                       doc=f"block {index} learning {layer.learning_pool} pool ({kh}, {kw}) pad ({ph}, {pw})",
                       span=span)
        if layer.learning_pool == "max":
            window = kh * kw
            arg_t = U8 if window <= 1 << 8 else U16 if window <= 1 << 16 else U32
            argmax = ctx.tensor(f"{b}_lp_arg", (bs, d), Role.SCRATCH, arg_t, slot="scratch", group=b,
                                doc=f"block {index} learning max pool: argmax offset a*kw + b in its window",
                                span=span)
            z_at_arg = ctx.tensor(f"{b}_lz", (bs, d), Role.SCRATCH, I8, slot="scratch", group=b,
                                  doc=f"block {index} NITRO-ReLU input at each window's argmax cell", span=span)
            ctx.train.append(Op(OpKind.MAX_POOL_ARGMAX, (h, z), (p, argmax, z_at_arg), (), pool_attrs + loop,
                                f"block {index} learning max pool", span))
            if pool_next is not None:
                ctx.fused_pools[pool_next.index] = _feature_pool(ctx, pool_next, h, loop)
        else:
            total = ctx.tensor(f"{b}_lp_sum", (bs, d), Role.TEMP, doc=f"block {index} learning pool window sum",
                               span=span)
            ctx.train.append(Op(OpKind.AVG_POOL, (h,), (p,), (total,), pool_attrs,
                                f"block {index} learning average pool", span))
    ctx.local_linear(b, index, p, lw, dx, d, index, span)
    ctx.layers.append(LayerConstants(b, geometry, ho, 256 * fan_in, ctx.params[-2].init_bound, amp,
                                     ho * wo // (kh * kw), (kh, kw, ph, pw), d, 256 * d, ctx.params[-1].init_bound))
    label = f"block {index} forward conv update"
    temps = ctx.sgd_temps(b, (cout, cin, k, k), fan_in, b, label, span)
    dz_shape: tuple[int, ...] = (bs, cout * plane)
    if argmax:
        dz = ctx.tensor(f"{b}_dz", dz_shape, Role.TEMP, ctx.acc_type, ctx.wrap,
                        doc=f"block {index} NITRO-ReLU backward at the argmax cells", span=span)
    else:
        dz = ctx.tensor(f"{b}_dz", (plane,), Role.SCRATCH, ctx.acc_type, ctx.wrap, "scratch", b,
                        f"block {index} NITRO-ReLU backward of one output channel", span)
    ctx.amps.append(amp)
    attrs = (("c_in", cin), ("c_out", cout), ("size", hin), ("kernel", k), ("pad", pad), ("out", ho),
             ("amp", amp), ("decay_inv", train.fwd_decay_inv), ("store", "wrap" if ctx.ref else "sat"),
             ("slope_inv", layer.slope_inv), ("saturated_divisor", 2147483647 if ctx.ref else 0),
             ("routing", layer.learning_pool if pooled else "none")) + pool_attrs
    if argmax:
        ctx.train.append(Op(OpKind.CONV_GRAD_SGD_MAX, (dx, argmax, z_at_arg, x, w), (w,), temps + (dz,), attrs,
                            label, span))
    else:
        ctx.train.append(Op(OpKind.CONV_GRAD_SGD, (dx, z, x, w), (w,), temps + (dz,), attrs, label, span))
    return h


def _feature_pool(ctx: _Ctx, st: Stage, x: str, loop: tuple[tuple[str, Attr], ...] = ()) -> str:
    """The op of a feature-extractor pool; returns its output (handed to the next item)."""
    layer = st.layer
    assert isinstance(layer, (MaxPool, AvgPool))
    k = layer.kernel
    _, oh, ow = st.out_shape
    y = _act(ctx, st, f"pool{st.index}_y", _size(st.out_shape), None,
             f"layer {st.index} {layer.kind} {k}x{k} output")
    attrs = _pool_attrs(st.in_shape, k, k, 0, 0, oh, ow, False) + loop
    label = f"layer {st.index} feature-extractor {layer.kind} {k}x{k}"
    if isinstance(layer, MaxPool):
        ctx.forward(Op(OpKind.MAX_POOL, (x,), (y,), (), attrs, label, layer.span))
    else:
        total = ctx.tensor(f"pool{st.index}_sum", (ctx.bs, _size(st.out_shape)), Role.TEMP,
                           doc=f"{label}: window sum", span=layer.span)
        ctx.forward(Op(OpKind.AVG_POOL, (x,), (y,), (total,), attrs, label, layer.span))
    return y


def lower_pool(ctx: _Ctx, st: Stage, x: str) -> str:
    """A feature-extractor pool: kernel k, stride k, no padding, forward only (docs/semantics.md#pools)."""
    if st.index in ctx.fused_pools:  # already computed inside the conv block before it, sample by sample
        return ctx.fused_pools[st.index]
    return _feature_pool(ctx, st, x)


def lower_dropout(ctx: _Ctx, st: Stage, x: str) -> str:
    """Training-only dropout (docs/semantics.md#dropout); evaluation reads the dropout's input instead."""
    layer = st.layer
    assert isinstance(layer, Dropout)
    size = _size(st.in_shape)
    name, dtype, doc = f"drop{st.index}_y", I16 if ctx.ref else None, f"layer {st.index} dropout {layer.rate_pct}% output"
    after = next((s.layer for s in ctx.walk[st.index + 1:] if not isinstance(s.layer, Dropout)), None)
    if (isinstance(after, ConvBlock) or isinstance(after, (MaxPool, AvgPool)) and after.kernel == 1) \
            and ctx.tensors[x].slot.startswith("act"):
        # Evaluation skips the dropout, so the next item reads x directly, and x and that item's output must
        # not share a slot: the per-sample forward of a max-learning-pool conv block would overwrite the
        # inputs of later samples, and so would a 1x1 pool whose output type is wider than x (a pool with
        # kernel >= 2 writes at most 2 bytes per 4 inputs it has read; linear blocks read all of x first).
        # So the dropout leaves the act0/act1 alternation and uses a slot pair of its own.
        slot = f"drop{ctx.drop_parity}"
        ctx.drop_parity ^= 1
        y = ctx.tensor(name, (ctx.bs, size), Role.ACT, dtype, slot=slot, group=name.rsplit("_", 1)[0], doc=doc,
                       span=layer.span)
    else:
        y = _act(ctx, st, name, size, dtype, doc)
    prod = ctx.tensor(f"drop{st.index}_prod", (ctx.bs, size), Role.TEMP, doc=f"layer {st.index} x * R",
                      span=layer.span)
    ctx.train.append(Op(OpKind.DROPOUT, (x,), (y,), (prod,),
                        (("pct", layer.rate_pct), ("scale", dropout_scale(layer.rate_pct)), ("count", size)),
                        f"layer {st.index} dropout {layer.rate_pct}%", layer.span))
    ctx.alias[y] = x
    return y


LOWER: dict[str, Callable[[_Ctx, Stage, str], str]] = {
    "linear": lower_linear, "conv": lower_conv, "maxpool": lower_pool, "avgpool": lower_pool,
    "dropout": lower_dropout,
}


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
    walk = ctx.walk = stages(model)
    for st in walk:
        x = LOWER[st.layer.kind](ctx, st, x)
    n = _size(walk[-1].out_shape) if walk else n
    span = model.span("num_classes")
    train = model.train
    w = ctx.weight("out_w", "output.weight", (classes, n), n, _output_gain(model), span,
                   f"output linear {n}->{classes}")
    ctx.layers.append(LayerConstants("out", f"output {n}->{classes}", 1, 256 * n, ctx.params[-1].init_bound, 1, 1,
                                     (1, 1, 0, 0), 0, 0, 0))
    logits = ctx.tensor("out_logits", (bs, classes), Role.SCRATCH, I8, slot="scratch", group="out",
                        doc="output logits", span=span)
    ctx.linear_scale(x, w, logits, "out_acc", n, classes, "output linear", span, infer=True)
    ctx.loss_grad(logits, "out_delta", "out_loss", -1, "out", "global loss", span)
    ctx.grad_sgd("out", "out_delta", x, w, n, classes, 1, train.subnet_decay_inv, "out", "output linear update",
                 span)
    # A plateau increase that would take any A above 2^62 is skipped (docs/semantics.md#training-protocol).
    lr_inv_max = (1 << 62) // max(ctx.amps)
    param_count = sum(ctx.tensors[p.tensor].size for p in ctx.params)
    constants = (("BATCH", bs), ("CHANNELS", c), ("HEIGHT", hgt), ("WIDTH", wid), ("INPUT_LEN", model.input_len),
                 ("N_CLASSES", classes), ("N_BLOCKS", len(model.blocks)), ("TARGET", model.target_value),
                 ("PARAMS_COUNT", param_count), ("LR_INV_INIT", train.lr_inv), ("LR_INV_MAX", lr_inv_max))

    def resolve(name: str) -> str:
        while name in ctx.alias:
            name = ctx.alias[name]
        return name

    # Evaluation never augments and skips dropouts (docs/semantics.md#dropout): ops read the aliased inputs.
    infer = tuple(replace(op, ins=tuple(resolve(name) for name in op.ins)) for op in ctx.infer)
    return Program(model.name, str(model.semantics), tuple(ctx.tensors.values()), tuple(ctx.init),
                   tuple(ctx.train), infer, tuple(ctx.params), constants,
                   tuple(f"b{i}" for i in range(len(model.blocks))), model.sha256, model.weight_bits,
                   tuple(ctx.layers))


def _output_gain(model: Model) -> int:
    """Decision (the paper is silent; docs/semantics.md#initialisation): the output layer uses the gain of the last
    block's slope."""
    blocks = model.blocks
    slope = blocks[-1].slope_inv if blocks else 4
    return RELU_TABLE[slope][1]


__all__ = ["lower", "kaiming_bound", "isqrt_floor", "relu_table", "LOWER", "__version__"]
