"""Emit: ir.Program + BoundsReport -> {file name: C text}. The only module that imports jinja2.

Python decides every number here (views per op kind); the templates in `templates/` only
arrange them. Output is deterministic: no timestamps, no paths; the header records the
nitrogen version and the canonical spec hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jinja2

from . import __version__
from .bounds import BoundsReport
from .errors import InternalError
from .ir import Op, OpKind, Program, Role, Store
from .layout import (CHECKPOINT_HEADER, CHECKPOINT_HEADER_BYTES, CHECKPOINT_MAGIC, CHECKPOINT_STATE,
                     CHECKPOINT_VERSION, CheckpointFormat, Layout, checkpoint_format, plan)

ABI_VERSION = 2  # 2: the context gained `epoch` (checkpoints)
NORM_SCALE = 51  # semantics 3.4

# Status codes: the enum and the string table are generated from this one list.
STATUS: tuple[tuple[str, int, str], ...] = (
    ("OK", 0, "success"),
    ("ERR_ARG", -1, "NULL pointer or out-of-range argument; the context is unchanged"),
    # Rejections of checkpoint_load() (the order of its checks is documented in the header); ctx unchanged.
    ("ERR_MAGIC", -2, "not a nitrogen checkpoint (wrong magic bytes)"),
    ("ERR_VERSION", -3, "checkpoint format version not supported by this build"),
    ("ERR_SPEC", -4, "checkpoint of another network (spec hash differs)"),
    ("ERR_TRUNCATED", -5, "checkpoint truncated (shorter than its header or its length field)"),
    ("ERR_LENGTH", -6, "checkpoint length field does not match this network, or bytes after its end"),
    ("ERR_CRC", -7, "checkpoint corrupt (CRC-32 mismatch)"),
    ("ERR_RANGE", -8, "checkpoint value out of range (a parameter, lr_inv or the PRNG increment)"),
)


def _template_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise InternalError("templates directory not found (broken installation)")


def cint(value: int) -> str:
    """An integer as a C literal of a type that holds it."""
    if -(1 << 31) < value < (1 << 31):
        return str(value)
    if value == -(1 << 31):
        return "INT32_MIN"
    if value == -(1 << 63):
        return "INT64_MIN"
    return f"INT64_C({value})"


def chex64(value: int) -> str:
    """A uint64 as a hexadecimal C literal."""
    return f"UINT64_C(0x{value:016X})"


def carray(values: tuple[int, ...], per_line: int = 16) -> str:
    rows = [", ".join(f"{v:4d}" for v in values[i:i + per_line]) for i in range(0, len(values), per_line)]
    return ",\n    ".join(rows)


_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_template_dir())), undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
_ENV.filters["cint"] = cint
_ENV.filters["carray"] = carray
_ENV.filters["chex64"] = chex64


class _Views:
    """Builds the plain dict each op template receives."""

    def __init__(self, program: Program, report: BoundsReport, layout: Layout) -> None:
        self.p, self.r, self.layout = program, report, layout
        self.prefix = program.name
        self.macs: dict[str, MacKernel] = {}  # file-scope kernels the rendered ops call

    sample_loop = False  # rendering ops inside a per-sample loop (variable `ns`, `rows` = 1)

    def ref(self, name: str) -> str:
        t = self.p.tensor(name)
        base = t.name if t.role is Role.ARG else self.layout.cref(t)
        batch = self.p.constant("BATCH")
        if self.sample_loop and t.role is not Role.PARAM and len(t.shape) == 2 and t.shape[0] == batch:
            return f"(&{base}[(size_t)ns * {t.shape[1]}u])"   # sample ns of a batch tensor
        return base

    def ctype(self, name: str) -> str:
        return self.r[name].ctype.ctype

    def rng(self, name: str) -> str:
        b = self.r[name]
        return f"[{b.lo}, {b.hi}]"

    def exact(self, name: str) -> str:
        b = self.r[name]
        wraps = " wrapped to" if b.store is Store.WRAP and (b.lo, b.hi) != (b.exact_lo, b.exact_hi) else ""
        return f"[{b.exact_lo}, {b.exact_hi}] ({b.bits} bits),{wraps} {b.ctype.ctype}"

    def base(self, op: Op) -> dict[str, Any]:
        # Comments name the layer, not the file position: the YAML and DSL forms of one spec
        # must generate byte-identical C.
        v: dict[str, Any] = {"label": op.label, "wrap": self.p.semantics == "reference",
                             "rows": "1u" if self.sample_loop else "rows"}
        v.update({k: val for k, val in op.attrs})
        return v

    def kaiming_init(self, op: Op) -> dict[str, Any]:
        (w,) = op.outs
        return self.base(op) | {"w": self.ref(w), "w_t": self.ctype(w)}

    def augment(self, op: Op) -> dict[str, Any]:
        per_sample = bool(op.attr("per_sample"))
        return self.base(op) | {"x": self.ref(op.ins[0]), "y": self.ref(op.outs[0]),
                                "len": self.p.tensor(op.ins[0]).shape[1], "crop_span": 2 * op.int_attr("crop_pad"),
                                "units": "rows" if per_sample else "1u", "per_unit": "1u" if per_sample else "rows"}

    def linear_scale(self, op: Op) -> dict[str, Any]:
        x, w = op.ins
        (acc,) = op.temps
        (y,) = op.outs
        return self.base(op) | {
            "x": self.ref(x), "x_t": self.ctype(x), "w": self.ref(w), "w_t": self.ctype(w), "y": self.ref(y),
            "acc_t": self.ctype(acc), "prod_t": self.r.product_type(acc).ctype, "chunk": self.r.chunk(acc),
            "acc_bits": self.r[acc].ctype.bits, "ranges": f"x {self.rng(x)}, w {self.rng(w)}: acc {self.exact(acc)}"}

    def nitro_relu(self, op: Op) -> dict[str, Any]:
        return self.base(op) | {"z": self.ref(op.ins[0]), "h": self.ref(op.outs[0]),
                                "count": self.p.tensor(op.outs[0]).shape[1], "range": self.rng(op.outs[0])}

    def loss_grad(self, op: Op) -> dict[str, Any]:
        logits, _ = op.ins
        (delta,) = op.outs
        (loss,) = op.temps
        return self.base(op) | {"logits": self.ref(logits), "delta": self.ref(delta), "delta_t": self.ctype(delta),
                                "loss_t": self.ctype(loss), "range": self.exact(delta)}

    def linear_dx(self, op: Op) -> dict[str, Any]:
        delta, w = op.ins
        (dx,) = op.outs
        return self.base(op) | {"delta": self.ref(delta), "delta_t": self.ctype(delta), "w": self.ref(w),
                                "w_t": self.ctype(w), "dx": self.ref(dx),
                                "dx_t": self.ctype(dx), "prod_t": self.r.product_type(dx).ctype,
                                "range": self.exact(dx)}

    def nitro_relu_backward(self, op: Op) -> dict[str, Any]:
        dh, z = op.ins
        (dz,) = op.outs
        return self.base(op) | {"dh": self.ref(dh), "dh_t": self.ctype(dh), "z": self.ref(z), "dz": self.ref(dz),
                                "dz_t": self.ctype(dz), "count": self.p.tensor(dz).shape[1],
                                "range": self.exact(dz)}

    def linear_grad_sgd(self, op: Op) -> dict[str, Any]:
        delta, x, w = op.ins
        grad, g, wnew, row = op.temps
        return self.base(op) | {
            "delta": self.ref(delta), "delta_t": self.ctype(delta), "x": self.ref(x), "x_t": self.ctype(x),
            "w": self.ref(w), "w_t": self.ctype(w),
            "row": self.ref(row), "row_t": self.ctype(row), "prod_t": self.r.product_type(grad).ctype,
            "grad_t": self.ctype(grad), "g_t": self.ctype(g), "wnew_t": self.ctype(wnew),
            "wmax": (1 << (self.p.weight_bits - 1)) - 1, "grad_range": self.exact(grad),
            "g_range": self.exact(g), "wnew_range": self.exact(wnew), "w_range": self.rng(w)}


    def _taps(self, op: Op) -> dict[str, Any]:
        """Per kernel offset a, the output rows [lo[a], hi[a]) whose input row h + a - pad is real."""
        size, pad, out, k = (op.int_attr(key) for key in ("size", "pad", "out", "kernel"))
        lo = [max(0, pad - a) for a in range(k)]
        hi = [max(lo[a], min(out, size + pad - a)) for a in range(k)]
        return {"lo": lo, "hi": hi, "fan_in": op.int_attr("c_in") * k * k}

    def conv_scale(self, op: Op) -> dict[str, Any]:
        x, w = op.ins
        acc, plane, part, xpad = op.temps
        padded = op.int_attr("size") + 2 * op.int_attr("pad")
        chunk = self.r.chunk(acc)
        target_t = "int32_t" if chunk else self.ctype(plane)
        term_t = "int32_t" if chunk else self.r.product_type(acc).ctype
        mac = mac_kernel(target_t, self.ctype(xpad), self.ctype(op.ins[1]), term_t, self.p.semantics == "reference",
                         op.int_attr("kernel"))
        self.macs[mac.name] = mac
        return self.base(op) | self._taps(op) | {"mac": mac.name,
            "stride": padded, "wide": self.p.tensor(plane).size, "xpad": self.ref(xpad), "xp_t": self.ctype(xpad),
            "xpad_len": self.p.tensor(xpad).size,
            # x_pad's type holds x's proven interval, which can be narrower than x's own type (reference-mode
            # dropout stores int8 values as int16): the narrowing cast keeps every value and quiets -Wconversion.
            "xp_cast": f"({self.ctype(xpad)})" if self.r[xpad].ctype.bits < self.r[x].ctype.bits else "",
            "x": self.ref(x), "x_t": self.ctype(x), "w": self.ref(w), "w_t": self.ctype(w),
            "z": self.ref(op.outs[0]), "plane": self.ref(plane), "plane_t": self.ctype(plane), "part": self.ref(part),
            "chunk": self.r.chunk(acc), "prod_t": self.r.product_type(acc).ctype, "acc_t": self.ctype(acc),
            "acc_bits": self.r[acc].ctype.bits,
            "ranges": f"x {self.rng(x)}, w {self.rng(w)}: acc {self.exact(acc)}"}

    @staticmethod
    def _real(ph: int, pw: int, height: int, width: int) -> str:
        """C condition: padded window coordinates (r, c) address a real cell. Only padded dimensions
        need a test: without padding, floor-sized windows never leave the input (semantics 4.5)."""
        tests = []
        for var, pad, size in (("r", ph, height), ("c", pw, width)):
            if pad:
                tests.append(f"{var} >= {pad}u && {var} < {size + pad}u")
        return " && ".join(tests) or "1"

    def _pool(self, op: Op) -> dict[str, Any]:
        x = op.ins[0]
        y = op.outs[0]
        return self.base(op) | {"x": self.ref(x), "x_t": self.ctype(x), "y": self.ref(y), "y_t": self.ctype(y),
                                "padded": bool(op.int_attr("ph") or op.int_attr("pw")), "range": self.rng(y),
                                "real": self._real(op.int_attr("ph"), op.int_attr("pw"), op.int_attr("height"),
                                                   op.int_attr("width")),
                                "arg": "", "arg_t": ""}

    def max_pool(self, op: Op) -> dict[str, Any]:
        return self._pool(op)

    def max_pool_argmax(self, op: Op) -> dict[str, Any]:
        arg = op.outs[1]
        return self._pool(op) | {"arg": self.ref(arg), "arg_t": self.ctype(arg), "z": self.ref(op.ins[1]),
                                 "lz": self.ref(op.outs[2])}

    def avg_pool(self, op: Op) -> dict[str, Any]:
        return self._pool(op) | {"sum_t": self.ctype(op.temps[0])}

    def dropout(self, op: Op) -> dict[str, Any]:
        x, y = op.ins[0], op.outs[0]
        return self.base(op) | {"x": self.ref(x), "x_t": self.ctype(x), "y": self.ref(y), "y_t": self.ctype(y),
                                "prod_t": self.ctype(op.temps[0]), "range": self.rng(y)}

    def conv_grad_sgd(self, op: Op) -> dict[str, Any]:
        if op.kind is OpKind.CONV_GRAD_SGD_MAX:
            dp, arg, z, x, w = op.ins
        else:
            (dp, z, x, w), arg = op.ins, ""
        grad, g, wnew, row, dz = op.temps
        return self.base(op) | self._taps(op) | {
            "dp": self.ref(dp), "dp_t": self.ctype(dp), "d": self.p.tensor(dp).shape[1],
            "arg": self.ref(arg) if arg else "", "arg_t": self.ctype(arg) if arg else "",
            "padded": bool(op.int_attr("ph") or op.int_attr("pw")),
            "real": self._real(op.int_attr("ph"), op.int_attr("pw"), op.int_attr("out"), op.int_attr("out")),
            "real_r": self._real(op.int_attr("ph"), 0, op.int_attr("out"), 0),
            "real_c": self._real(0, op.int_attr("pw"), 0, op.int_attr("out")),
            "z": self.ref(z), "x": self.ref(x), "x_t": self.ctype(x), "w": self.ref(w), "w_t": self.ctype(w),
            "row": self.ref(row), "row_t": self.ctype(row), "prod_t": self.r.product_type(grad).ctype,
            "dz": self.ref(dz) if self.p.tensor(dz).role is not Role.TEMP else "", "dz_t": self.ctype(dz),
            "g_t": self.ctype(g), "wnew_t": self.ctype(wnew), "wmax": (1 << (self.p.weight_bits - 1)) - 1,
            "dz_range": self.exact(dz), "grad_range": self.exact(grad), "g_range": self.exact(g),
            "wnew_range": self.exact(wnew), "w_range": self.rng(w)}


@dataclass(frozen=True, slots=True)
class MacKernel:
    """acc[i] += sum_b w[b] * x[i + b] for b < taps, over a contiguous run: one kernel row per call, so
    the accumulators are loaded and stored once per row instead of once per tap. A file-scope function
    whose restrict parameters let compilers vectorise it without run-time alias checks (block-scope
    restrict pointers into one struct do not). Exact: the row's products are a subset of the
    accumulator's terms, and every subset sum of terms whose interval contains 0 lies within the
    accumulator's proven interval (semantics 10.2)."""

    name: str
    acc_t: str
    x_t: str
    w_t: str
    term_t: str
    wrap: bool
    taps: int


def mac_kernel(acc_t: str, x_t: str, w_t: str, term_t: str, wrap: bool, taps: int) -> MacKernel:
    short = {"int8_t": "i8", "int16_t": "i16", "int32_t": "i32", "int64_t": "i64", "uint32_t": "u32"}
    name = (f"ng_mac{taps}_{short[acc_t]}_{short[x_t]}_{short[w_t]}" + ("" if wrap else f"_{short[term_t]}"))
    return MacKernel(name, acc_t, x_t, w_t, term_t, wrap, taps)


VIEWS: dict[OpKind, Callable[[_Views, Op], dict[str, Any]]] = {
    OpKind.KAIMING_INIT: _Views.kaiming_init,
    OpKind.AUGMENT: _Views.augment,
    OpKind.LINEAR_SCALE: _Views.linear_scale,
    OpKind.NITRO_RELU: _Views.nitro_relu,
    OpKind.LOSS_GRAD: _Views.loss_grad,
    OpKind.LINEAR_DX: _Views.linear_dx,
    OpKind.NITRO_RELU_BACKWARD: _Views.nitro_relu_backward,
    OpKind.LINEAR_GRAD_SGD: _Views.linear_grad_sgd,
    OpKind.CONV_SCALE: _Views.conv_scale,
    OpKind.MAX_POOL: _Views.max_pool,
    OpKind.MAX_POOL_ARGMAX: _Views.max_pool_argmax,
    OpKind.AVG_POOL: _Views.avg_pool,
    OpKind.DROPOUT: _Views.dropout,
    OpKind.CONV_GRAD_SGD: _Views.conv_grad_sgd,
    OpKind.CONV_GRAD_SGD_MAX: _Views.conv_grad_sgd,
}


def _sample_loop(op: Op) -> str:
    return next((str(v) for k, v in op.attrs if k == "sample_loop"), "")


def _render_ops(views: _Views, ops: tuple[Op, ...]) -> list[str]:
    """Each op's C; consecutive ops that share a `sample_loop` attribute go into one loop over the samples,
    where batch tensors are addressed at sample `ns` and each op sees one row (the memory plan of lower_conv)."""
    out: list[str] = []
    i = 0
    while i < len(ops):
        loop = _sample_loop(ops[i])
        j = i + 1
        while loop and j < len(ops) and _sample_loop(ops[j]) == loop:
            j += 1
        views.sample_loop = bool(loop)
        parts = [_ENV.get_template(f"ops/{op.kind.value}.c.j2").render(v=VIEWS[op.kind](views, op)).rstrip("\n")
                 for op in ops[i:j]]
        views.sample_loop = False
        if loop:
            body = "\n".join(parts).replace("\n", "\n    ")
            out.append(f"/* {loop}: the forward one sample at a time; per-sample tensors are reused by every sample. */\n"
                       f"for (uint32_t ns = 0; ns < rows; ns++) {{\n    {body}\n}}")
        else:
            out.extend(parts)
        i = j
    return out


def emit(program: Program, report: BoundsReport, norm: Any = None) -> dict[str, str]:
    """Render `<name>.h` and `<name>.c`. No I/O. With `norm` (a `preprocess.Stats`: per-channel `mean`,
    `mad`, `samples`), the model also gets `<name>_normalize()` with those constants baked in."""
    layout = plan(program, report)
    views = _Views(program, report, layout)
    tables = {}
    for op in program.train:
        if op.kind is OpKind.NITRO_RELU:
            tables[op.int_attr("slope_inv")] = op.attr("table")
    params = [(p, program.tensor(p.tensor), report[p.tensor]) for p in program.params]
    helpers = {"scale32"} if program.semantics == "reference" else set()
    if program.semantics == "reference":
        helpers |= {"wrap32", "wrap8"}
    for op in program.train:
        if op.kind is OpKind.AUGMENT:
            helpers |= ({"crop"} if op.attr("crop_pad") else set()) | ({"flip"} if op.attr("flip") else set())
        if op.kind in (OpKind.LINEAR_SCALE, OpKind.CONV_SCALE) and program.semantics != "reference":
            helpers.add(f"scale{report[op.temps[0]].ctype.bits}")
    ctx = {
        "p": program.name, "P": program.name.upper(), "version": __version__, "abi": ABI_VERSION,
        "sha256": program.spec_sha256, "semantics": program.semantics, "weight_bits": program.weight_bits,
        "constants": program.constants, "layout": layout, "status": STATUS, "params": params,
        "blocks": program.blocks, "relu_tables": sorted(tables.items()),
        "init_ops": _render_ops(views, program.init), "train_ops": _render_ops(views, program.train),
        "infer_ops": _render_ops(views, program.infer), "uses_augment": any(
            op.kind is OpKind.AUGMENT for op in program.train),
        "x_aug": next((views.ref(t.name) for t in program.tensors if t.name == "x_aug"), ""),
        "logits": views.ref("out_logits"), "helpers": helpers, "norm": norm, "norm_scale": NORM_SCALE,
        "macs": [views.macs[name] for name in sorted(views.macs)],
        "ck": checkpoint_format(program, report), "ck_fields": _ck_fields(program, checkpoint_format(program, report)),
        "ck_header": CHECKPOINT_HEADER,
        "ck_header_bytes": CHECKPOINT_HEADER_BYTES, "ck_state": CHECKPOINT_STATE, "ck_version": CHECKPOINT_VERSION,
        "ck_magic": ", ".join(f"0x{b:02X}" for b in CHECKPOINT_MAGIC),
    }
    name = program.name
    return {f"{name}.h": _ENV.get_template("model.h.j2").render(**ctx),
            f"{name}.c": _ENV.get_template("model.c.j2").render(**ctx)}


def emit_harness(program: Program) -> str:
    """The verification harness main() (host only; uses stdio)."""
    params = [program.tensor(p.tensor) for p in program.params]
    return _ENV.get_template("harness.c.j2").render(p=program.name, P=program.name.upper(),
                                                    blocks=program.blocks, params=params)


FIRMWARE_FILES = {"main.c": "main.c.j2", "samples.h": "samples.h.j2", "startup.c": "startup.c.j2",
                  "semihost.h": "semihost.h.j2", "link.ld": "link.ld.j2", "Makefile": "Makefile.j2",
                  "{p}.cmake": "model.cmake.j2", "FIRMWARE.md": "FIRMWARE.md.j2"}


def _ck_fields(program: Program, fmt: CheckpointFormat) -> list[dict[str, Any]]:
    """Every field of the checkpoint image after the magic, in byte order, for `<name>_checkpoint_read()`:
    [start, end), the C expression of its value (uint64-convertible; `e` indexes a parameter's elements) and
    the size of one element. The parameters' offsets are checked against the byte layout `_save` writes."""
    P = program.name.upper()
    at = fmt.offsets
    fields: list[dict[str, Any]] = [
              {"start": at["version"], "end": at["version"] + 4, "expr": f"{P}_CHECKPOINT_VERSION", "size": 4},
              {"start": at["spec_hash"], "end": at["spec_hash"] + 8, "expr": f"{P}_CHECKPOINT_SPEC_HASH", "size": 8},
              {"start": at["length"], "end": at["length"] + 8, "expr": f"(uint64_t){P}_CHECKPOINT_BYTES", "size": 8},
              {"start": at["crc32"], "end": at["crc32"] + 4, "expr": "crc", "size": 4}]
    offset = at["params"]
    for ck_param, param in zip(fmt.params, program.params, strict=True):
        tensor = program.tensor(param.tensor)
        if ck_param.offset != offset:
            raise InternalError(f"checkpoint offset of {ck_param.export}: {ck_param.offset}, expected {offset}")
        fields.append({"start": offset, "end": offset + 4 * tensor.size, "size": 4, "array": True,
                       "expr": f"(uint64_t)(uint32_t)(int32_t)ctx->{tensor.name}[e]"})
        offset += 4 * tensor.size
    exprs = {"rng_state": "ctx->rng_state", "rng_inc": "ctx->rng_inc", "lr_inv": "(uint64_t)ctx->lr_inv",
             "steps": "ctx->steps", "epoch": "ctx->epoch"}
    for name, size, _ in CHECKPOINT_STATE:
        fields.append({"start": at[name], "end": at[name] + size, "expr": exprs[name], "size": size})
    for field in fields:
        field.setdefault("array", False)  # a parameter's elements (indexed by e), even when it has just one
    for before, after in zip(fields, fields[1:]):
        if before["end"] > after["start"]:
            raise InternalError(f"checkpoint fields overlap at byte {after['start']}")
    if fields[-1]["end"] != fmt.total_bytes:
        raise InternalError(f"checkpoint fields end at {fields[-1]['end']}, not {fmt.total_bytes}")
    return fields


def emit_firmware(program: Program, view: dict[str, Any]) -> dict[str, str]:
    """The example firmware around a model (templates/firmware/). `view` holds every number and array
    (firmware.py decides them); this only renders."""
    names = {"p": program.name, "P": program.name.upper(), "version": __version__, "sha256": program.spec_sha256}
    return {out.format(p=program.name): _ENV.get_template(f"firmware/{src}").render(**names, **view)
            for out, src in FIRMWARE_FILES.items()}


__all__ = ["emit", "emit_harness", "emit_firmware", "cint", "carray", "VIEWS", "STATUS", "ABI_VERSION"]
