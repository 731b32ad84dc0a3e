"""The intermediate representation: tensors and ordered op lists, as frozen dataclasses.

`lower.py` builds a `Program` from a `spec.Model`; `bounds.py` proves an interval for every
tensor and chooses the C types left open here; `emit.py` renders each `Op` with the template
`templates/ops/<kind>.c.j2`. Imports only `errors.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .errors import InternalError, Span


@dataclass(frozen=True, slots=True)
class IntType:
    bits: int
    signed: bool = True

    @property
    def min(self) -> int:
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    @property
    def ctype(self) -> str:
        return f"{'' if self.signed else 'u'}int{self.bits}_t"


I8, I16, I32, I64 = IntType(8), IntType(16), IntType(32), IntType(64)
U8 = IntType(8, signed=False)
U16 = IntType(16, signed=False)
U32 = IntType(32, signed=False)
SIGNED_TYPES = (I8, I16, I32, I64)


class Role(StrEnum):
    ARG = "arg"          # a function argument (the input batch, the labels)
    PARAM = "param"      # trained weights, in the context struct
    ACT = "act"          # activations handed from one block to the next
    SCRATCH = "scratch"  # a block's working tensors, overlaid with other blocks' (fused schedule)
    TEMP = "temp"        # a value that lives only in a register or loop variable (accumulators, gradients)


class Store(StrEnum):
    """How a tensor's values are kept in its C type."""

    EXACT = "exact"      # proven to fit: never wraps, never saturates
    WRAP = "wrap"        # reference semantics: two's-complement wrap to the type's width
    SATURATE = "sat"     # nitrogen weights: saturated to +-(2^(b-1)-1) after every update


@dataclass(frozen=True, slots=True)
class Tensor:
    name: str                    # `<owner>_<quantity>`, shared with the reference's range checks
    shape: tuple[int, ...]       # leading BATCH dimension included for batch tensors
    role: Role
    dtype: IntType | None = None  # fixed by the semantics, or None: chosen by bounds.py
    store: Store = Store.EXACT
    slot: str = ""               # storage overlay (memory plan): tensors of one slot share bytes...
    group: str = ""              # ...and tensors of one group in a slot are live together
    export: str = ""             # parameter name in the flat export layout ("blocks.0.forward.weight")
    doc: str = ""
    span: Span | None = None

    @property
    def size(self) -> int:
        out = 1
        for d in self.shape:
            out *= d
        return out


class OpKind(StrEnum):
    """Closed set; each value is the stem of its template `templates/ops/<value>.c.j2`."""

    KAIMING_INIT = "kaiming_init"
    AUGMENT = "augment"
    LINEAR_SCALE = "linear_scale"
    NITRO_RELU = "nitro_relu"
    LOSS_GRAD = "loss_grad"
    LINEAR_DX = "linear_dx"
    NITRO_RELU_BACKWARD = "nitro_relu_backward"
    LINEAR_GRAD_SGD = "linear_grad_sgd"
    CONV_SCALE = "conv_scale"
    MAX_POOL = "max_pool"
    MAX_POOL_ARGMAX = "max_pool_argmax"
    AVG_POOL = "avg_pool"
    DROPOUT = "dropout"
    CONV_GRAD_SGD = "conv_grad_sgd"
    CONV_GRAD_SGD_MAX = "conv_grad_sgd_max"


# Arity per kind: (ins, outs, temps). Order of names is documented in lower.py's builders.
ARITY: dict[OpKind, tuple[int, int, int]] = {
    OpKind.KAIMING_INIT: (0, 1, 0),
    OpKind.AUGMENT: (1, 1, 0),
    OpKind.LINEAR_SCALE: (2, 1, 1),          # ins (x, w); outs (y); temps (acc)
    OpKind.NITRO_RELU: (1, 1, 0),            # ins (z); outs (h)
    OpKind.LOSS_GRAD: (2, 1, 1),             # ins (logits, labels); outs (delta); temps (loss)
    OpKind.LINEAR_DX: (2, 1, 0),             # ins (delta, w); outs (dx)
    OpKind.NITRO_RELU_BACKWARD: (2, 1, 0),   # ins (dh, z); outs (dz)
    OpKind.LINEAR_GRAD_SGD: (3, 1, 4),       # ins (delta, x, w); outs (w); temps (grad, g, wnew, row)
    OpKind.CONV_SCALE: (2, 1, 4),            # ins (x, w); outs (z); temps (acc, plane, part, padded sample)
    OpKind.MAX_POOL: (1, 1, 0),              # ins (x); outs (y)
    OpKind.MAX_POOL_ARGMAX: (2, 3, 0),       # ins (h, z); outs (y, argmax offset within the window, z there)
    OpKind.AVG_POOL: (1, 1, 1),              # ins (x); outs (y); temps (window sum)
    OpKind.DROPOUT: (1, 1, 1),               # ins (x); outs (y); temps (x * R)
    OpKind.CONV_GRAD_SGD: (4, 1, 5),         # ins (dp, z, x, w); outs (w); temps (grad, g, wnew, row, dz)
    OpKind.CONV_GRAD_SGD_MAX: (5, 1, 5),     # ins (dp, argmax, z at argmax, x, w); outs (w); temps as CONV_GRAD_SGD
}

Attr = int | str | bool | tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Op:
    kind: OpKind
    ins: tuple[str, ...]
    outs: tuple[str, ...]
    temps: tuple[str, ...] = ()
    attrs: tuple[tuple[str, Attr], ...] = ()
    label: str = ""              # human description for the comment above the generated code
    span: Span | None = None

    def attr(self, key: str) -> Attr:
        for k, v in self.attrs:
            if k == key:
                return v
        raise InternalError(f"op {self.kind} has no attribute '{key}'")

    def int_attr(self, key: str) -> int:
        value = self.attr(key)
        if not isinstance(value, int):
            raise InternalError(f"op {self.kind} attribute '{key}' is not an integer")
        return value


@dataclass(frozen=True, slots=True)
class Param:
    """One trained weight tensor, in export order."""

    tensor: str
    export: str
    fan_in: int
    init_bound: int


@dataclass(frozen=True, slots=True)
class LayerConstants:
    """The per-layer constants lowering decided for one block or the output layer, printed by
    `nitrogen check` so they can be compared with the paper's tables."""

    name: str            # "b0", ..., "out"
    geometry: str        # "conv 1->128 3x3/1", "linear 512->1024", "output 1024->10"
    out_size: int        # H_o of a conv block, 1 otherwise
    sf: int              # forward scaling factor
    init_bound: int      # forward Kaiming bound B
    amp: int             # effective amplification of the forward layer
    amp_adjust: int      # conv: H_o^2 // (kh*kw), the factor of the opt-in adjustment; 1 otherwise
    pool: tuple[int, int, int, int]  # learning pool (kh, kw, ph, pw); (1, 1, 0, 0) without one
    decoder: int         # learning linear fan-in D (0 for the output layer)
    learn_sf: int
    learn_bound: int


@dataclass(frozen=True, slots=True)
class Program:
    name: str
    semantics: str
    tensors: tuple[Tensor, ...]
    init: tuple[Op, ...]          # parameter initialisation, in draw order
    train: tuple[Op, ...]         # one training step, fused schedule (docs/semantics.md#the-training-step)
    infer: tuple[Op, ...]         # evaluation forward
    params: tuple[Param, ...]
    constants: tuple[tuple[str, int], ...]  # public macros: BATCH, INPUT_LEN, N_CLASSES, ...
    blocks: tuple[str, ...]       # block owners ("b0", "b1", ...) for per-block statistics
    spec_sha256: str
    weight_bits: int
    layers: tuple[LayerConstants, ...] = ()

    def tensor(self, name: str) -> Tensor:
        for t in self.tensors:
            if t.name == name:
                return t
        raise InternalError(f"no tensor '{name}'")

    def constant(self, name: str) -> int:
        return dict(self.constants)[name]


def verify(program: Program) -> None:
    """Internal invariants; a failure is a nitrogen bug, never a user error."""
    names = [t.name for t in program.tensors]
    if len(set(names)) != len(names):
        raise InternalError("duplicate tensor names")
    known = set(names)
    for phase in (program.init, program.train, program.infer):
        for op in phase:
            n_in, n_out, n_temp = ARITY[op.kind]
            if (len(op.ins), len(op.outs), len(op.temps)) != (n_in, n_out, n_temp):
                raise InternalError(f"{op.kind}: wrong arity {len(op.ins)}/{len(op.outs)}/{len(op.temps)}")
            for name in op.ins + op.outs + op.temps:
                if name not in known:
                    raise InternalError(f"{op.kind} uses undefined tensor '{name}'")
    for p in program.params:
        if program.tensor(p.tensor).role is not Role.PARAM:
            raise InternalError(f"parameter '{p.tensor}' is not a PARAM tensor")
