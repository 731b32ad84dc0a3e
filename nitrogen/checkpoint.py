"""Checkpoints in Python: the byte format of the generated `<name>_checkpoint_save()` / `_load()`, read and
written with `struct` and `zlib` (independently of the C), so checkpoints move between the NumPy reference,
the ctypes backend and a device in both directions.

Format (every integer little-endian; `layout.py` places each field, the generated header documents it):
a 28-byte header (magic b"NGCK", uint32 version, uint64 spec hash, uint64 total length, uint32 CRC-32 of
every other byte), the parameters as int32 in export order, then the training state (uint64 PCG32 state and
increment, int64 lr_inv, uint32 steps, uint32 epoch). `decode` checks in the same order as the C and
rejects with one E42x diagnostic per kind of problem, the same kinds the C statuses name (`STATUS_CODES`).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from .errors import Diagnostic, NitrogenError
from .layout import CHECKPOINT_HEADER_BYTES, CHECKPOINT_MAGIC, CHECKPOINT_VERSION, CheckpointFormat, checkpoint_format

if TYPE_CHECKING:
    from . import reference
    from .spec import Model

SUFFIX = ".ngck"
_HEADER = struct.Struct("<4sIQQI")   # magic, version, spec hash, length, CRC-32
_STATE = struct.Struct("<QQqII")     # rng_state, rng_inc, lr_inv, steps, epoch
_CRC_AT = 24
# C status name -> the diagnostic code `decode` gives for the same rejection.
STATUS_CODES = {"ERR_MAGIC": "E421", "ERR_VERSION": "E422", "ERR_SPEC": "E423", "ERR_TRUNCATED": "E424",
                "ERR_LENGTH": "E425", "ERR_CRC": "E426", "ERR_RANGE": "E427"}
M32, M64 = (1 << 32) - 1, (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class State:
    """The training state a checkpoint carries besides the parameters (the context's state members)."""

    rng_state: int
    rng_inc: int
    lr_inv: int
    steps: int = 0
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class Checkpoint:
    params: dict[str, np.ndarray]   # export name -> int64 array of the tensor's shape (reference names)
    state: State


def format_of(model: Model) -> CheckpointFormat:
    """The checkpoint format (and spec hash) of a spec's network, from its lowered program."""
    from .pipeline import analyse

    return checkpoint_format(*analyse(model))


def _crc(data: bytes | bytearray) -> int:
    return zlib.crc32(data[CHECKPOINT_HEADER_BYTES:], zlib.crc32(data[:_CRC_AT]))


def encode(fmt: CheckpointFormat, params: Mapping[str, np.ndarray], state: State) -> bytes:
    """The checkpoint bytes. ValueError for parameters or a state that the C would reject on load."""
    parts = []
    for p in fmt.params:
        if p.export not in params:
            raise ValueError(f"missing parameter '{p.export}'")
        a = np.asarray(params[p.export])
        if a.shape != p.shape or a.dtype.kind not in "iu":
            raise ValueError(f"parameter '{p.export}' has shape {a.shape} ({a.dtype}), expected integers {p.shape}")
        if a.size and (int(a.min()) < p.lo or int(a.max()) > p.hi):
            raise ValueError(f"parameter '{p.export}' has values outside [{p.lo}, {p.hi}]")
        parts.append(a.astype("<i4").tobytes())
    if not 1 <= state.lr_inv <= fmt.lr_inv_max or not state.rng_inc & 1:
        raise ValueError(f"invalid training state {state} (lr_inv in [1, {fmt.lr_inv_max}], odd increment)")
    tail = _STATE.pack(state.rng_state & M64, state.rng_inc & M64, state.lr_inv, state.steps & M32,
                       state.epoch & M32)
    data = bytearray(_HEADER.pack(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, fmt.spec_hash, fmt.total_bytes, 0))
    data += b"".join(parts) + tail
    if len(data) != fmt.total_bytes:
        raise ValueError(f"checkpoint of {len(data)} bytes, expected {fmt.total_bytes}")
    struct.pack_into("<I", data, _CRC_AT, _crc(data))
    return bytes(data)


def _fail(code: str, message: str, hint: str | None = None, notes: tuple[str, ...] = ()) -> NitrogenError:
    return NitrogenError([Diagnostic(code, message, notes=notes, hint=hint)])


def decode(fmt: CheckpointFormat, data: bytes, source: str = "checkpoint", owner: str | None = None) -> Checkpoint:
    """Validate and parse checkpoint bytes, checking in the C's order; NitrogenError (E421-E427) on the first
    problem. `owner`: the name of the network the file is believed to come from, for the E423 message."""
    n = len(data)
    if data[:4] != CHECKPOINT_MAGIC[:min(n, 4)]:
        raise _fail("E421", f"{source}: not a nitrogen checkpoint (it starts with {bytes(data[:4])!r}, a checkpoint "
                    f"with {CHECKPOINT_MAGIC!r})", hint="pass a last.ngck or best.ngck written by `nitrogen train` or by "
                    "<name>_checkpoint_save()")
    if n < CHECKPOINT_HEADER_BYTES:
        raise _fail("E424", f"{source}: truncated checkpoint: {n} bytes, less than the {CHECKPOINT_HEADER_BYTES}-byte "
                    "header")
    _, version, spec_hash, length, stored_crc = _HEADER.unpack_from(data)
    if version != CHECKPOINT_VERSION:
        raise _fail("E422", f"{source}: checkpoint format version {version}; this nitrogen reads version "
                    f"{CHECKPOINT_VERSION}", hint="read it with the nitrogen version that wrote it")
    if spec_hash != fmt.spec_hash:
        theirs = f"'{owner}'" if owner else "another network"
        raise _fail("E423", f"{source}: checkpoint of {theirs} (spec hash {spec_hash:016x}), not of '{fmt.name}' "
                    f"(spec hash {fmt.spec_hash:016x})",
                    notes=("the spec hash covers the semantics, weight storage, input, classes, the evaluation "
                           "forward and every parameter's name, shape and range; not the batch size, learning "
                           "rate or schedules",),
                    hint="pass the spec the checkpoint was trained with")
    if length != fmt.total_bytes:
        raise _fail("E425", f"{source}: the checkpoint's length field says {length} bytes, but a checkpoint of "
                    f"'{fmt.name}' has {fmt.total_bytes}")
    if n < length:
        raise _fail("E424", f"{source}: truncated checkpoint: {n} of {length} bytes")
    if n > length:
        raise _fail("E425", f"{source}: {n} bytes, {n - length} more than the checkpoint's length {length}")
    if (crc := _crc(data)) != stored_crc:
        raise _fail("E426", f"{source}: corrupt checkpoint: the stored CRC-32 is {stored_crc:08x}, the content's "
                    f"{crc:08x}", hint="the file was damaged after it was written; use another copy")
    params: dict[str, np.ndarray] = {}
    for p in fmt.params:
        size = int(np.prod(p.shape))
        values = np.frombuffer(data, dtype="<i4", count=size, offset=p.offset).astype(np.int64)
        bad = np.flatnonzero((values < p.lo) | (values > p.hi))
        if bad.size:
            where = "][".join(str(int(i)) for i in np.unravel_index(int(bad[0]), p.shape))
            raise _fail("E427", f"{source}: parameter {p.export}[{where}] = {values[bad[0]]} is outside its range "
                        f"[{p.lo}, {p.hi}]")
        params[p.export] = values.reshape(p.shape)
    offsets = fmt.offsets
    state = State(*_STATE.unpack_from(data, offsets["rng_state"]))
    if not 1 <= state.lr_inv <= fmt.lr_inv_max:
        raise _fail("E427", f"{source}: lr_inv = {state.lr_inv} is outside [1, {fmt.lr_inv_max}]")
    if not state.rng_inc & 1:
        raise _fail("E427", f"{source}: the PRNG increment {state.rng_inc} is even (PCG32 needs an odd one)")
    return Checkpoint(params, state)


def is_checkpoint(path: Path) -> bool:
    """True for a `.ngck` file or a file that starts with the magic (else: another format, e.g. params.npz)."""
    if path.suffix == SUFFIX:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == CHECKPOINT_MAGIC
    except OSError:
        return False


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _fail("E420", f"{path}: no such file") from None
    except OSError as exc:
        raise _fail("E420", f"{path}: cannot read the checkpoint ({exc.strerror})") from None


def run_spec_name(path: Path) -> str | None:
    """The spec named by the `metrics.json` of the run directory holding `path`, if there is one."""
    try:
        name = json.loads((path.parent / "metrics.json").read_text()).get("spec")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def load(path: Path, fmt: CheckpointFormat) -> Checkpoint:
    """Read and validate a checkpoint file (E420 if it cannot be read, E421-E427 as `decode`)."""
    return decode(fmt, read_bytes(path), str(path), owner=run_spec_name(path))


def save(path: Path, fmt: CheckpointFormat, params: Mapping[str, np.ndarray], state: State) -> None:
    path.write_bytes(encode(fmt, params, state))


def restore(model: reference.Model, ck: Checkpoint) -> None:
    """Put a checkpoint's parameters and training state into a NumPy reference model: what the generated
    `<name>_checkpoint_load()` does to a context (the epoch counter is the training driver's business)."""
    model.set_params(ck.params)
    model.rng.state, model.rng.inc = ck.state.rng_state, ck.state.rng_inc
    model.lr_inv, model.steps = ck.state.lr_inv, ck.state.steps


__all__ = ["State", "Checkpoint", "format_of", "encode", "decode", "load", "save", "is_checkpoint", "read_bytes",
           "run_spec_name", "restore", "STATUS_CODES", "SUFFIX"]
