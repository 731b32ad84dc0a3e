"""Memory plan: where every stored tensor lives in the caller-owned context struct.

Parameters are plain members. Every other stored tensor belongs to a slot and a group:
the groups of one slot have disjoint lifetimes (lower.py's fused schedule guarantees it),
so each slot is a C union of one struct per group. Members are sorted by decreasing
alignment, so with natural alignment (every 32-bit ARM and RISC-V ABI, x86-64) there is no
padding inside a struct and `ctx_bytes` is exactly `sizeof` of the generated struct.

The checkpoint format (`CheckpointFormat`: the byte image `<name>_checkpoint_save()` writes and
`checkpoint.py` reads) is planned here too, with the spec hash that identifies compatible builds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .bounds import BoundsReport
from .ir import OpKind, Program, Role, Tensor


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    ctype: str
    count: int
    doc: str
    bytes: int
    align: int


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    members: tuple[Member, ...]
    bytes: int


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    groups: tuple[Group, ...]
    bytes: int
    align: int


@dataclass(frozen=True, slots=True)
class Layout:
    params: tuple[Member, ...]
    slots: tuple[Slot, ...]
    state: tuple[Member, ...]        # PRNG, learning rate, counters
    ctx_bytes: int
    param_bytes: int
    state_offsets: tuple[tuple[str, int], ...] = ()   # byte offset of each STATE member in the struct

    def cref(self, t: Tensor) -> str:
        """C expression of a stored tensor, relative to `ctx`."""
        if t.role is Role.PARAM:
            return f"ctx->{t.name}"
        return f"ctx->{t.slot}.{t.group}.{t.name}"


def _round_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


def _member(t: Tensor, report: BoundsReport, doc: str) -> Member:
    ctype = report[t.name].ctype
    size = ctype.bits // 8
    return Member(t.name, ctype.ctype, t.size, doc, t.size * size, size)


def _sorted(members: list[Member]) -> tuple[Member, ...]:
    return tuple(sorted(members, key=lambda m: -m.align))  # stable: keeps lowering order within an alignment


STATE = (Member("rng_state", "uint64_t", 1, "PCG32 state of rng_train (docs/semantics.md#random-numbers)", 8, 8),
         Member("rng_inc", "uint64_t", 1, "PCG32 stream increment", 8, 8),
         Member("lr_inv", "int64_t", 1, "IntegerSGD learning-rate inverse; see set_lr_inv()", 8, 8),
         Member("steps", "uint32_t", 1, "training steps taken since init", 4, 4),
         Member("epoch", "uint32_t", 1, "epochs completed: maintained by the caller (init sets 0, train_step never "
                "changes it), kept in checkpoints so a resumed run knows where it stands", 4, 4))


def plan(program: Program, report: BoundsReport) -> Layout:
    params = []
    slots: dict[str, dict[str, list[Member]]] = {}
    for t in program.tensors:
        if t.role is Role.PARAM:
            b = report[t.name]
            params.append(_member(t, report, f"{t.export} {list(t.shape)}, range [{b.lo}, {b.hi}]"))
        elif t.role in (Role.ACT, Role.SCRATCH) and t.name not in report.unused:
            b = report[t.name]
            doc = f"{t.doc} {list(t.shape)}, range [{b.lo}, {b.hi}]"
            slots.setdefault(t.slot, {}).setdefault(t.group, []).append(_member(t, report, doc))
    out_slots = []
    for slot, groups in slots.items():
        gs = []
        for group, members in groups.items():
            ordered = _sorted(members)
            align = max(m.align for m in ordered)
            gs.append(Group(group, ordered, _round_up(sum(m.bytes for m in ordered), align)))
        align = max(max(m.align for m in g.members) for g in gs)
        out_slots.append(Slot(slot, tuple(gs), _round_up(max(g.bytes for g in gs), align), align))
    ordered_params = _sorted(params)
    # Struct order: 8-byte state first, then parameters and slots by decreasing alignment, the counters last.
    state8, state4 = STATE[:3], STATE[3:]
    pieces = [(m.bytes, m.align, m.name) for m in state8]
    pieces += [(m.bytes, m.align, "") for m in ordered_params]
    slot_order = tuple(sorted(out_slots, key=lambda s: -s.align))
    pieces += [(s.bytes, s.align, "") for s in slot_order]
    pieces += [(m.bytes, m.align, m.name) for m in state4]
    offset = 0
    offsets = []
    for size, align, name in pieces:
        offset = _round_up(offset, align)
        if name:
            offsets.append((name, offset))
        offset += size
    total = _round_up(offset, max(a for _, a, _ in pieces))
    return Layout(ordered_params, slot_order, STATE, total, sum(m.bytes for m in params), tuple(offsets))


# -- Checkpoints ---------------------------------------------------------------------------------------------

CHECKPOINT_MAGIC = b"NGCK"
CHECKPOINT_VERSION = 1

# (field, offset, bytes, meaning) of the header; every integer is little-endian.
CHECKPOINT_HEADER = (
    ("magic", 0, 4, 'the bytes "NGCK"'),
    ("version", 4, 4, "uint32 format version"),
    ("spec_hash", 8, 8, "uint64 spec hash, <P>_CHECKPOINT_SPEC_HASH"),
    ("length", 16, 8, "uint64 total length in bytes, header included"),
    ("crc32", 24, 4, "uint32 CRC-32 (zlib) of bytes [0, 24) followed by bytes [28, length)"),
)
CHECKPOINT_HEADER_BYTES = 28
# The training state after the parameters: (field, bytes, meaning).
CHECKPOINT_STATE = (
    ("rng_state", 8, "uint64 PCG32 state of rng_train"),
    ("rng_inc", 8, "uint64 PCG32 increment (odd)"),
    ("lr_inv", 8, "int64 learning-rate inverse, in [1, <P>_LR_INV_MAX]"),
    ("steps", 4, "uint32 training steps taken"),
    ("epoch", 4, "uint32 epochs completed (caller-maintained)"),
)
# The attributes of the evaluation forward's ops that the spec hash covers (the function the weights compute).
_HASHED_ATTRS = {OpKind.LINEAR_SCALE: ("n_in", "n_out", "sf"),
                 OpKind.CONV_SCALE: ("c_in", "c_out", "size", "kernel", "pad", "out", "sf"),
                 OpKind.NITRO_RELU: ("slope_inv",),
                 OpKind.MAX_POOL: ("channels", "height", "width", "kh", "kw", "ph", "pw"),
                 OpKind.AVG_POOL: ("channels", "height", "width", "kh", "kw", "ph", "pw")}


@dataclass(frozen=True, slots=True)
class CkParam:
    export: str                  # name in the export layout ("blocks.0.forward.weight")
    shape: tuple[int, ...]
    lo: int                      # the tensor's proven range: load rejects anything outside it
    hi: int
    offset: int                  # byte offset of its first int32 in the checkpoint


@dataclass(frozen=True, slots=True)
class CheckpointFormat:
    """Where every byte of a checkpoint of one network lives, and the spec hash that identifies it."""

    name: str                    # the network's name (not hashed: a renamed device build loads the same file)
    spec_hash: int               # uint64: the first 8 bytes of SHA-256(spec_text), big-endian
    spec_text: str               # the canonical description the hash covers, one fact per line
    params: tuple[CkParam, ...]
    params_count: int
    state_offsets: tuple[tuple[str, int], ...]  # absolute offset of each CHECKPOINT_STATE field
    lr_inv_max: int
    total_bytes: int

    @property
    def params_bytes(self) -> int:
        return 4 * self.params_count

    @property
    def offsets(self) -> dict[str, int]:
        """Absolute offset of every header and state field, and of the parameters ("params")."""
        out = {name: at for name, at, _, _ in CHECKPOINT_HEADER}
        out["params"] = CHECKPOINT_HEADER_BYTES
        out.update(self.state_offsets)
        return out


def checkpoint_spec_text(program: Program, report: BoundsReport) -> str:
    """What a checkpoint's spec hash covers: everything that fixes the byte layout, the valid range of every
    value and the function the parameters compute (semantics, weight storage, input, classes, the evaluation
    forward's ops with their sizes, scaling factors, slopes and pools, every parameter's export name, shape and
    range). Not covered: the name, and what only steers training (batch size, lr_inv, amplification, decay,
    target value, dropout, augmentation, learning-pool kind, seed, epochs, schedules), so that a checkpoint
    written at batch 64 loads into a batch-1 build of the same network for fine-tuning."""
    storage = ("int32 wrapping" if program.semantics == "reference"
               else f"{program.weight_bits}-bit saturating")
    c = dict(program.constants)
    lines = [f"nitrogen checkpoint spec hash {CHECKPOINT_VERSION}", f"semantics {program.semantics}",
             f"weights {storage}", f"input {c['CHANNELS']}x{c['HEIGHT']}x{c['WIDTH']}", f"classes {c['N_CLASSES']}"]
    for op in program.infer:
        keys = _HASHED_ATTRS.get(op.kind)
        if keys is not None:
            lines.append(f"forward {op.kind.value} " + " ".join(f"{k}={op.attr(k)}" for k in keys))
    for p in program.params:
        t, b = program.tensor(p.tensor), report[p.tensor]
        lines.append(f"param {p.export} {'x'.join(map(str, t.shape))} [{b.lo}, {b.hi}]")
    return "\n".join(lines) + "\n"


def checkpoint_format(program: Program, report: BoundsReport) -> CheckpointFormat:
    text = checkpoint_spec_text(program, report)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    params, offset = [], CHECKPOINT_HEADER_BYTES
    for p in program.params:
        t, b = program.tensor(p.tensor), report[p.tensor]
        params.append(CkParam(p.export, t.shape, b.lo, b.hi, offset))
        offset += 4 * t.size
    state = []
    for name, size, _ in CHECKPOINT_STATE:
        state.append((name, offset))
        offset += size
    return CheckpointFormat(program.name, int.from_bytes(digest[:8], "big"), text, tuple(params),
                            program.constant("PARAMS_COUNT"), tuple(state), program.constant("LR_INV_MAX"), offset)
