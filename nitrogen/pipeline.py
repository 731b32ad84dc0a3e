"""The whole compiler, readable in one screen: spec.Model -> checked Program -> C files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import ir
from .bounds import BoundsReport, check_bounds
from .emit import emit
from .errors import Diagnostic, NitrogenError
from .layout import plan
from .lower import lower
from .spec import MAX_SIZE, Model


@dataclass(frozen=True, slots=True)
class Compiled:
    model: Model
    program: ir.Program
    report: BoundsReport
    files: dict[str, str]


def analyse(model: Model) -> tuple[ir.Program, BoundsReport]:
    program = lower(model)          # shapes, constants, fused schedule           (E2xx)
    ir.verify(program)              # internal invariants                          (InternalError)
    report = check_bounds(program)  # worst-case interval and C type per tensor   (E3xx)
    _check_context_size(model, program, report)  # the whole context within the size limit (E219)
    return program, report


def _check_context_size(model: Model, program: ir.Program, report: BoundsReport) -> None:
    """E219 when the context struct would exceed MAX_SIZE bytes (spec.py has checked each tensor's elements)."""
    layout = plan(program, report)
    if layout.ctx_bytes <= MAX_SIZE:
        return
    members = [*layout.params, *(m for slot in layout.slots for g in slot.groups for m in g.members)]
    big = max(members, key=lambda m: m.bytes)
    span = program.tensor(big.name).span or model.span("")
    raise NitrogenError([Diagnostic(
        "E219", f"the context would need {layout.ctx_bytes} bytes, more than 2^31 - 1", span,
        (f"parameters {layout.param_bytes} bytes, other tensors and state "
         f"{layout.ctx_bytes - layout.param_bytes} bytes",
         f"largest buffer: {big.name}, {big.ctype}[{big.count}], {big.bytes} bytes"),
        "the context is one C object, which no 32-bit target holds above 2^31 - 1 bytes (nitrogen's size limit); "
        "use fewer units or a smaller train.batch_size")])


def compile_model(model: Model, norm: Any = None) -> Compiled:
    """norm: training-set statistics (`preprocess.Stats`) to bake into `<name>_normalize()`, or None."""
    program, report = analyse(model)
    return Compiled(model, program, report, emit(program, report, norm))
