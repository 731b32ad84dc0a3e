"""Memory plan: where every stored tensor lives in the caller-owned context struct.

Parameters are plain members. Every other stored tensor belongs to a slot and a group:
the groups of one slot have disjoint lifetimes (lower.py's fused schedule guarantees it),
so each slot is a C union of one struct per group. Members are sorted by decreasing
alignment, so with natural alignment (every 32-bit ARM and RISC-V ABI, x86-64) there is no
padding inside a struct and `ctx_bytes` is exactly `sizeof` of the generated struct.
"""

from __future__ import annotations

from dataclasses import dataclass

from .bounds import BoundsReport
from .ir import Program, Role, Tensor


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


STATE = (Member("rng_state", "uint64_t", 1, "PCG32 state of rng_train (semantics 2.3)", 8, 8),
         Member("rng_inc", "uint64_t", 1, "PCG32 stream increment", 8, 8),
         Member("lr_inv", "int64_t", 1, "IntegerSGD learning-rate inverse; see set_lr_inv()", 8, 8),
         Member("steps", "uint32_t", 1, "training steps taken since init", 4, 4))


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
    # Struct order: 8-byte state first, then parameters and slots by decreasing alignment, the counter last.
    state8, state4 = STATE[:3], STATE[3:]
    pieces = [(m.bytes, m.align) for m in state8]
    pieces += [(m.bytes, m.align) for m in ordered_params]
    slot_order = tuple(sorted(out_slots, key=lambda s: -s.align))
    pieces += [(s.bytes, s.align) for s in slot_order]
    pieces += [(m.bytes, m.align) for m in state4]
    offset = 0
    for size, align in pieces:
        offset = _round_up(offset, align) + size
    total = _round_up(offset, max(a for _, a in pieces))
    return Layout(ordered_params, slot_order, STATE, total, sum(m.bytes for m in params))
