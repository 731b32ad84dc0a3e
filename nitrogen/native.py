"""The generated C as a Python object: built into a shared library and called through ctypes.

`nitrogen train` runs the training arithmetic here, in the same C a device would run (decision: ctypes
rather than a harness process, so the epoch loop, progress and schedules stay in Python while every
integer of training is computed by the generated code). `Native` and `reference.Model` offer the same
small interface (`shuffle`, `train_step`, `evaluate`, `lr_inv`, `params`, `set_params`), which is all
the training driver uses.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from . import checkpoint
from .errors import Diagnostic, InternalError, NitrogenError
from .layout import checkpoint_format
from .pipeline import Compiled

_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nitrogen" / "build"
FAST_FLAGS = ("-O3", "-march=native")
PORTABLE_FLAGS = ("-O2",)


def _compiler() -> str:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    raise NitrogenError([Diagnostic("E901", "no C compiler found (tried $CC, cc, gcc, clang)",
                                    hint="install gcc, e.g. apt-get install gcc")])


def build_library(compiled: Compiled, directory: Path | None = None) -> Path:
    """Compile `<name>.c` into a shared library (cached by source hash); returns its path."""
    name = compiled.model.name
    source = compiled.files[f"{name}.c"]
    cc = _compiler()
    key = hashlib.sha256((cc + "\0" + source + compiled.files[f"{name}.h"]).encode()).hexdigest()[:16]
    target_dir = directory or _CACHE
    target = target_dir / f"lib{name}-{key}.so"
    if target.exists():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nitrogen-build-") as tmp:
        for file, text in compiled.files.items():
            (Path(tmp) / file).write_text(text)
        errors = ""
        for flags in (FAST_FLAGS, PORTABLE_FLAGS):  # -march=native is not known to every compiler
            out = Path(tmp) / target.name
            cmd = [cc, "-std=c99", *flags, "-shared", "-fPIC", "-o", str(out), str(Path(tmp) / f"{name}.c")]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                os.replace(out, target)  # atomic: a concurrent build never sees half a library
                return target
            errors = proc.stderr.strip()
    raise NitrogenError([Diagnostic("E902", "the generated C did not compile", details=(errors,))])


class Native:
    """One model context in the generated C (a caller-owned ctx buffer kept by Python)."""

    def __init__(self, compiled: Compiled, seed: int, library: Path | None = None) -> None:
        program = compiled.program
        self.name = name = compiled.model.name
        self.batch = program.constant("BATCH")
        self.input_len = program.constant("INPUT_LEN")
        self.classes = program.constant("N_CLASSES")
        self.params_count = program.constant("PARAMS_COUNT")
        self._names = [(p.export, program.tensor(p.tensor).shape) for p in program.params]
        self._lib = ctypes.CDLL(str(library or build_library(compiled)))
        blocks = program.constant("N_BLOCKS")

        class StepStats(ctypes.Structure):
            _fields_ = [("loss", ctypes.c_int64), ("correct", ctypes.c_uint32),
                        ("local_loss", ctypes.c_int64 * blocks), ("local_correct", ctypes.c_uint32 * blocks)]

        self._stats = StepStats()
        from .layout import plan  # the context size is the memory plan's, checked by a static assert in the C
        layout = plan(program, compiled.report)
        self._ctx = np.zeros((layout.ctx_bytes + 7) // 8, dtype=np.uint64)  # 8-byte aligned, as int64 members need
        self._at = dict(layout.state_offsets)  # the state members, read and written in place (host byte order)
        self._ck = checkpoint_format(program, compiled.report)
        size_p = ctypes.POINTER(ctypes.c_size_t)
        ptr, i8p, u8p, u32p, i32p = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_uint8),
                                     ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_int32))
        sig = {"init": [ptr, ctypes.c_uint64], "train_step": [ptr, i8p, u8p, ctypes.POINTER(StepStats)],
               "evaluate": [ptr, i8p, u8p, ctypes.c_uint32, u32p], "predict": [ptr, i8p, ctypes.c_uint32, i8p],
               "set_lr_inv": [ptr, ctypes.c_int64], "shuffle": [ptr, u32p, ctypes.c_uint32],
               "export_params": [ptr, i32p, ctypes.c_size_t], "import_params": [ptr, i32p, ctypes.c_size_t],
               "checkpoint_save": [ptr, u8p, ctypes.c_size_t, size_p], "checkpoint_load": [ptr, u8p, ctypes.c_size_t]}
        self._fn = {}
        for fn, argtypes in sig.items():
            f = getattr(self._lib, f"{name}_{fn}")
            f.argtypes, f.restype = argtypes, ctypes.c_int
            self._fn[fn] = f
        self._lr_max = program.constant("LR_INV_MAX")
        self._call("init", self._ctx.ctypes.data, seed)

    def _call(self, fn: str, *args: object) -> None:
        status = self._fn[fn](*args)
        if status != 0:
            raise ValueError(f"{self.name}_{fn} returned status {status} (invalid argument)")

    @staticmethod
    def _p(a: np.ndarray, ctype: type) -> object:
        return a.ctypes.data_as(ctypes.POINTER(ctype))  # type: ignore[call-overload]

    # -- the interface shared with reference.Model -------------------------------------------------------
    def shuffle(self, n: int) -> np.ndarray:
        index = np.empty(n, dtype=np.uint32)
        self._call("shuffle", self._ctx.ctypes.data, self._p(index, ctypes.c_uint32), n)
        return index

    def train_step(self, x: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
        """One step on a batch of int8 inputs; returns (global loss, correct predictions) before the update."""
        x = np.ascontiguousarray(x, dtype=np.int8).reshape(self.batch, self.input_len)
        y = np.ascontiguousarray(labels, dtype=np.uint8).reshape(self.batch)
        self._call("train_step", self._ctx.ctypes.data, self._p(x, ctypes.c_int8), self._p(y, ctypes.c_uint8),
                   ctypes.byref(self._stats))
        return int(self._stats.loss), int(self._stats.correct)

    def evaluate(self, x: np.ndarray, labels: np.ndarray) -> int:
        x = np.ascontiguousarray(x, dtype=np.int8).reshape(len(labels), self.input_len)
        y = np.ascontiguousarray(labels, dtype=np.uint8)
        out = ctypes.c_uint32(0)
        self._call("evaluate", self._ctx.ctypes.data, self._p(x, ctypes.c_int8), self._p(y, ctypes.c_uint8),
                   len(y), ctypes.byref(out))
        return int(out.value)

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.int8).reshape(-1, self.input_len)
        logits = np.empty((len(x), self.classes), dtype=np.int8)
        self._call("predict", self._ctx.ctypes.data, self._p(x, ctypes.c_int8), len(x),
                   self._p(logits, ctypes.c_int8))
        return logits

    def _state(self, name: str, dtype: type) -> int:
        return int(self._ctx.view(dtype)[self._at[name] // np.dtype(dtype).itemsize])

    @property
    def lr_inv(self) -> int:
        return self._state("lr_inv", np.int64)

    @lr_inv.setter
    def lr_inv(self, value: int) -> None:
        self._call("set_lr_inv", self._ctx.ctypes.data, int(value))

    @property
    def epoch(self) -> int:
        """ctx->epoch, the caller-maintained count of finished epochs that checkpoints carry."""
        return self._state("epoch", np.uint32)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._ctx.view(np.uint32)[self._at["epoch"] // 4] = value

    @property
    def state(self) -> checkpoint.State:
        """The training state in the context: PRNG, lr_inv, step and epoch counters."""
        return checkpoint.State(self._state("rng_state", np.uint64), self._state("rng_inc", np.uint64),
                                self.lr_inv, self._state("steps", np.uint32), self.epoch)

    def checkpoint_save(self) -> bytes:
        """`<name>_checkpoint_save()`: the checkpoint bytes of the context."""
        buf = np.zeros(self._ck.total_bytes, dtype=np.uint8)
        written = ctypes.c_size_t(0)
        self._call("checkpoint_save", self._ctx.ctypes.data, self._p(buf, ctypes.c_uint8), buf.size,
                   ctypes.byref(written))
        return buf[:written.value].tobytes()

    def checkpoint_load(self, data: bytes, source: str = "checkpoint") -> None:
        """`<name>_checkpoint_load()`. A rejection raises the Python reader's diagnostic for the same bytes, which
        must be of the kind the C status names (else InternalError: the two implementations disagree)."""
        buf = np.frombuffer(bytes(data) + b"\0", dtype=np.uint8)  # never an empty (NULL) buffer
        status = self._fn["checkpoint_load"](self._ctx.ctypes.data, self._p(buf, ctypes.c_uint8), len(data))
        if status == 0:
            return
        from .emit import STATUS
        name = next((n for n, value, _ in STATUS if value == status), str(status))
        try:
            checkpoint.decode(self._ck, data, source)
        except NitrogenError as exc:
            if exc.diagnostics[0].code != checkpoint.STATUS_CODES.get(name):
                raise InternalError(f"{self.name}_checkpoint_load returned {name}, the Python reader "
                                    f"{exc.diagnostics[0].code}") from exc
            raise
        raise InternalError(f"{self.name}_checkpoint_load returned {name}, but the Python reader accepts {source}")

    @property
    def lr_inv_max(self) -> int:
        return self._lr_max

    @property
    def params(self) -> dict[str, np.ndarray]:
        flat = np.empty(self.params_count, dtype=np.int32)
        self._call("export_params", self._ctx.ctypes.data, self._p(flat, ctypes.c_int32), self.params_count)
        out, offset = {}, 0
        for export, shape in self._names:
            size = int(np.prod(shape))
            out[export] = flat[offset:offset + size].reshape(shape).astype(np.int64)
            offset += size
        return out

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        missing = [n for n, _ in self._names if n not in params]
        if missing:
            raise ValueError(f"missing parameters {missing}")
        wide = np.concatenate([np.asarray(params[n], dtype=np.int64).reshape(-1) for n, _ in self._names])
        if wide.size and (int(wide.min()) < -(1 << 31) or int(wide.max()) >= 1 << 31):
            raise ValueError("parameter values outside int32")
        flat = wide.astype(np.int32)
        if flat.size != self.params_count:
            raise ValueError(f"expected {self.params_count} parameters, got {flat.size}")
        self._call("import_params", self._ctx.ctypes.data, self._p(flat, ctypes.c_int32), self.params_count)


__all__ = ["Native", "build_library"]
