"""The whole compiler, readable in one screen: spec.Model -> checked Program -> C files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import ir
from .bounds import BoundsReport, check_bounds
from .emit import emit
from .lower import lower
from .spec import Model


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
    return program, report


def compile_model(model: Model, norm: Any = None) -> Compiled:
    """norm: training-set statistics (`preprocess.Stats`) to bake into `<name>_normalize()`, or None."""
    program, report = analyse(model)
    return Compiled(model, program, report, emit(program, report, norm))
