"""verify: build the generated C with a harness, train it and the NumPy reference side by side,
and compare every output bit for bit after every step.

The two computations are independent: the C comes from lower -> bounds -> emit, the reference
(`reference.py`) implements the semantics directly from the spec. Batches are deterministic
pseudo-random int8 data (PCG32, stream 7 of the verification seed) or edge patterns.

Harness protocol (little-endian): stdin gets u64 seed, u32 steps, u32 n_eval, u32 dump_every_step,
u32 import_params (if set, PARAMS_COUNT int32 parameters follow), then per step i64 lr_inv (0 keeps it),
the int8 batch and uint8 labels, then the evaluation inputs and labels. stdout gets int64 records (status, statistics, PRNG state, lr_inv) and int32 parameter
dumps (every step when they fit in DUMP_LIMIT bytes in total, else per-tensor checksums and a full
dump after the last step), then the evaluation logits (int8) and API contract results.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from . import reference
from .emit import emit_harness
from .errors import Diagnostic, NitrogenError
from .pipeline import compile_model
from .spec import Model

DUMP_LIMIT = 256 << 20
_BUILT: dict[str, str] = {}  # source hash -> harness executable, so seeds and patterns reuse one build
PATTERNS = ("random", "min", "max", "zero", "mixed")
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fsanitize=undefined", "-fno-sanitize-recover=all")


@dataclass(frozen=True)
class Mismatch:
    step: int          # 0 = right after init
    tensor: str
    index: tuple[int, ...]
    c_value: int
    ref_value: int

    def __str__(self) -> str:
        where = f"[{']['.join(map(str, self.index))}]" if self.index else ""
        return f"step {self.step}, {self.tensor}{where}: c={self.c_value} ref={self.ref_value}"


@dataclass(frozen=True)
class Outcome:
    steps: int
    mismatch: Mismatch | None
    workdir: str

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def find_cc() -> str:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    raise NitrogenError([Diagnostic("E901", "no C compiler found (tried $CC, cc, gcc, clang)",
                                    hint="install gcc, e.g. apt-get install gcc")])


def make_batches(model: Model, steps: int, seed: int, pattern: str) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic int8 inputs (steps, B, C, H, W) and uint8 labels (steps, B)."""
    bs, classes = model.train.batch_size, model.num_classes
    shape = (steps, bs) + model.input_shape
    count = int(np.prod(shape))
    rng = reference.Pcg32(seed, 7)
    words = np.array([rng.next_u32() for _ in range((count + 3) // 4 + steps * bs)], dtype=np.uint32)
    raw = words.view(np.uint8)
    x = raw[:count].view(np.int8).reshape(shape).copy()
    labels = (words[(count + 3) // 4:] % classes).astype(np.uint8).reshape(steps, bs)
    if pattern == "min":
        x[:] = -128
    elif pattern == "max":
        x[:] = 127
    elif pattern == "zero":
        x[:] = 0
    elif pattern == "mixed":  # steps cycle through all -128, all 127, all 0 and random data
        for s in range(steps):
            if s % 4 < 3:
                x[s] = (-128, 127, 0)[s % 4]
    if pattern != "random":
        labels = ((np.arange(steps * bs) % 2) * (classes - 1)).astype(np.uint8).reshape(steps, bs)
    return x, labels


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, dtype: type, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        if self.pos + size > len(self.data):
            raise EOFError("harness output ended early")
        out: np.ndarray = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return out

    def i64(self) -> int:
        return int(self.take(np.int64, 1)[0])


def _first_diff(step: int, name: str, c: np.ndarray, ref: np.ndarray) -> Mismatch | None:
    c = np.asarray(c, dtype=np.int64).reshape(ref.shape)
    ref = np.asarray(ref, dtype=np.int64)
    bad = np.argwhere(c != ref)
    if len(bad) == 0:
        return None
    idx = tuple(int(i) for i in bad[0])
    return Mismatch(step, name, idx, int(c[idx]), int(ref[idx]))


def _signed64(u: int) -> int:
    """A uint64 as the int64 the harness writes."""
    return u - (1 << 64) if u >= 1 << 63 else u


def _checksum(values: np.ndarray) -> int:
    flat = values.reshape(-1).astype(np.int64).astype(np.uint64)
    weights = np.arange(1, flat.size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        total = int(np.sum(flat * weights, dtype=np.uint64))
    return total & 0x7FFFFFFFFFFFFFFF


def _compare_params(step: int, model: reference.Model, flat: np.ndarray) -> Mismatch | None:
    offset = 0
    for name, value in model.params.items():
        part = flat[offset:offset + value.size]
        offset += value.size
        found = _first_diff(step, name, part, value)
        if found:
            return found
    return None


def run(model: Model, *, steps: int = 20, seed: int = 0, batch: int | None = None, pattern: str = "random",
        lr_schedule: dict[int, int] | None = None, n_eval: int | None = None, workdir: str | None = None,
        cc: str | None = None, cflags: tuple[str, ...] = CFLAGS,
        progress: Callable[[str], None] | None = None,
        params: dict[str, np.ndarray] | None = None) -> Outcome:
    """Train `steps` steps in C and in the reference; return the first mismatch, if any.

    With `params`, both sides start from those parameters (reference names and layouts; the C gets them
    through `<name>_import_params()` in export order) instead of their own initialisation."""
    if batch is not None:
        model = replace(model, train=replace(model.train, batch_size=batch))
    compiled = compile_model(model)
    work = Path(workdir or tempfile.mkdtemp(prefix=f"nitrogen-verify-{model.name}-"))
    work.mkdir(parents=True, exist_ok=True)
    for name, text in compiled.files.items():
        (work / name).write_text(text)
    (work / "harness.c").write_text(emit_harness(compiled.program))
    exe = work / "harness"
    compiler = cc or find_cc()
    key = hashlib.sha256(repr((compiler, cflags, sorted(compiled.files.items()))).encode()).hexdigest()
    if key in _BUILT and Path(_BUILT[key]).exists():
        shutil.copy2(_BUILT[key], exe)
    else:
        build = [compiler, *cflags, "-o", str(exe), str(work / "harness.c"), str(work / f"{model.name}.c")]
        proc = subprocess.run(build, capture_output=True, text=True)
        if proc.returncode != 0:
            raise NitrogenError([Diagnostic("E902", "the generated C did not compile", hint=f"command: {' '.join(build)}",
                                            details=(proc.stderr.strip(),))])
        _BUILT[key] = str(exe)

    bs = model.train.batch_size
    xs, ys = make_batches(model, steps, seed + 1, pattern)
    n_eval = n_eval if n_eval is not None else min(3 * bs + 1, 200)
    ex, ey = make_batches(replace(model, train=replace(model.train, batch_size=n_eval)), 1, seed + 2, pattern)
    schedule = lr_schedule or {}
    params_count = compiled.program.constant("PARAMS_COUNT")
    dump_all = steps * params_count * 4 <= DUMP_LIMIT
    stdin = bytearray(np.array([seed], dtype=np.uint64).tobytes())
    stdin += np.array([steps, n_eval, int(dump_all), int(params is not None)], dtype=np.uint32).tobytes()
    if params is not None:
        ref_init = reference.Model(model, seed=seed)
        ref_init.set_params(params)
        stdin += np.concatenate([v.reshape(-1) for v in ref_init.params.values()]).astype(np.int32).tobytes()
    for s in range(steps):
        stdin += np.array([schedule.get(s, 0)], dtype=np.int64).tobytes() + xs[s].tobytes() + ys[s].tobytes()
    stdin += ex[0].tobytes() + ey[0].tobytes()
    (work / "stdin.bin").write_bytes(bytes(stdin))
    if progress:
        progress(f"running {steps} steps in C")
    run_proc = subprocess.run([str(exe)], input=bytes(stdin), capture_output=True)
    if run_proc.returncode != 0:
        raise NitrogenError([Diagnostic("E903", f"the harness failed with exit code {run_proc.returncode}",
                                        hint=f"inputs kept in {work}",
                                        details=(run_proc.stderr.decode(errors='replace').strip(),))])
    out = _Reader(run_proc.stdout)

    ref = reference.Model(model, seed=seed, ranges=compiled.report.ranges)
    if params is not None:
        ref.set_params(params)

    def fail(m: Mismatch) -> Outcome:
        return Outcome(steps, m, str(work))

    if (m := _first_diff(0, "status(init)", np.array([out.i64()]), np.array([0]))):
        return fail(m)
    if (m := _compare_params(0, ref, out.take(np.int32, params_count))):
        return fail(m)
    if (m := _first_diff(0, "rng_state", np.array([out.i64()]), np.array([_signed64(ref.rng_state[0])]))):
        return fail(m)
    for s in range(steps):
        if progress:
            progress(f"step {s + 1}/{steps}")
        if s in schedule:
            ref.lr_inv = schedule[s]
        stats = ref.train_step(xs[s], ys[s])
        want = [0, stats.loss, stats.correct]
        for b in range(len(stats.local_loss)):
            want += [stats.local_loss[b], stats.local_correct[b]]
        want += [_signed64(ref.rng_state[0]), ref.lr_inv]
        got = out.take(np.int64, len(want))
        names = ["status", "stats.loss", "stats.correct"]
        for b in range(len(stats.local_loss)):
            names += [f"stats.local_loss[{b}]", f"stats.local_correct[{b}]"]
        names += ["rng_state", "lr_inv"]
        for name, g, w in zip(names, got, want):
            if int(g) != int(w):
                return fail(Mismatch(s + 1, name, (), int(g), int(w)))
        if dump_all or s + 1 == steps:
            if (m := _compare_params(s + 1, ref, out.take(np.int32, params_count))):
                return fail(m)
        else:
            for name, value in ref.params.items():
                got_sum = out.i64()
                if got_sum != _checksum(value):
                    return fail(Mismatch(s + 1, f"{name} (checksum)", (), got_sum, _checksum(value)))
    if (m := _first_diff(steps, "predict.status", np.array([out.i64()]), np.array([0]))):
        return fail(m)
    c_logits = out.take(np.int8, n_eval * model.num_classes).reshape(n_eval, model.num_classes)
    if (m := _first_diff(steps, "predict.logits", c_logits, ref.predict(ex[0]))):
        return fail(m)
    if (m := _first_diff(steps, "evaluate", out.take(np.int64, 2), np.array([0, ref.evaluate(ex[0], ey[0])]))):
        return fail(m)
    # CRC-32 of the parameters as int32 little-endian, computed independently by zlib.
    want_crc = zlib.crc32(np.concatenate([v.reshape(-1) for v in ref.params.values()]).astype("<i4").tobytes())
    if (m := _first_diff(steps, "params_crc32", np.array([out.i64()]), np.array([want_crc]))):
        return fail(m)
    # API contracts (expected values come from the header's documentation, not from the reference).
    weights_are_int32 = model.semantics == "reference"
    first = int(next(iter(ref.params.values())).reshape(-1)[0])
    expect = {"export": 0, "import(roundtrip)": 0, "import(out of range)": 0 if weights_are_int32 else -1,
              "import(short)": -1, "train_step(bad label)": -1, "set_lr_inv(0)": -1, "set_lr_inv(max+1)": -1,
              "export(after rejections)": 0, "unchanged(after rejections)": 1,
              "param[0](after rejections)": -2147483648 if weights_are_int32 else first}
    for name, want_value in expect.items():
        if (got_value := out.i64()) != want_value:
            return fail(Mismatch(steps, f"api.{name}", (), got_value, want_value))
    return Outcome(steps, None, str(work))
