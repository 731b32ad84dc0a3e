"""Checkpoints: the generated `<name>_checkpoint_save()` / `_load()` against the independent Python reader and
writer (`nitrogen.checkpoint`, struct + zlib), fed by the NumPy reference.

Every C test links the generated model with a small tool written here (`TOOL`), built with
-std=c99 -pedantic -Wall -Wextra -Werror and AddressSanitizer + UBSan, so a load that reads past the bytes it
was given, or a conversion with undefined behaviour, fails the test.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import nitrogen
from nitrogen import checkpoint, reference
from nitrogen.emit import STATUS
from nitrogen.errors import NitrogenError
from nitrogen.pipeline import compile_model
from nitrogen.spec import Model
from nitrogen.verify import make_batches

from conftest import ROOT, SPECS, load

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")

CODE = {name: value for name, value, _ in STATUS}
CFLAGS = ["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-O1", "-g"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]

TOOL = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "@p@.h"

static @p@_ctx_t net, copy, probe;
static uint8_t buf[@P@_CHECKPOINT_BYTES + 1u];
static uint8_t out[@P@_CHECKPOINT_BYTES + 1u];
static int8_t xb[@P@_BATCH * @P@_INPUT_LEN];
static uint8_t yb[@P@_BATCH];

static void die(const char *what) { fprintf(stderr, "ck_tool: %s\n", what); exit(2); }

static size_t slurp(const char *path, uint8_t *dst, size_t cap) {
    FILE *f = fopen(path, "rb");
    size_t n;
    if (f == NULL) die(path);
    n = fread(dst, 1, cap, f);
    fclose(f);
    return n;
}

static void save(const char *path) {
    size_t written = 0;
    FILE *f;
    if (@p@_checkpoint_save(&net, out, sizeof out, &written) != @P@_OK || written != @P@_CHECKPOINT_BYTES) die("save");
    f = fopen(path, "wb");
    if (f == NULL || fwrite(out, 1, written, f) != written || fclose(f) != 0) die(path);
}

/* Steps [first, first + count) of a batch file: per step the int8 inputs, then the uint8 labels. */
static void train(const char *path, unsigned long first, unsigned long count) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) die(path);
    if (fseek(f, (long)(first * (sizeof xb + sizeof yb)), SEEK_SET) != 0) die("seek");
    for (unsigned long s = 0; s < count; s++) {
        if (fread(xb, 1, sizeof xb, f) != sizeof xb || fread(yb, 1, sizeof yb, f) != sizeof yb) die("short batches");
        if (@p@_train_step(&net, xb, yb, NULL) != @P@_OK) die("train_step");
    }
    fclose(f);
}

/* Load exactly n bytes from a buffer of exactly n bytes (ASan catches any read past them). */
static int load_exact(const uint8_t *src, size_t n) {
    uint8_t *own = malloc(n > 0u ? n : 1u);
    int st;
    if (own == NULL) die("malloc");
    memcpy(own, src, n);
    st = (int)@p@_checkpoint_load(&net, own, n);
    free(own);
    return st;
}

static int changed(void) { return memcmp(&net, &copy, sizeof net) != 0; }

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "";
    if (strcmp(cmd, "train") == 0 && argc == 8) {          /* train SEED LR_INV EPOCH STEPS BATCHES OUT */
        if (@p@_init(&net, strtoull(argv[2], NULL, 10)) != @P@_OK) die("init");
        if (atoll(argv[3]) > 0 && @p@_set_lr_inv(&net, atoll(argv[3])) != @P@_OK) die("set_lr_inv");
        train(argv[6], 0, strtoul(argv[5], NULL, 10));
        net.epoch = (uint32_t)strtoul(argv[4], NULL, 10);
        save(argv[7]);
        return 0;
    }
    if (strcmp(cmd, "resume") == 0 && argc == 7) {         /* resume IN FIRST STEPS BATCHES OUT */
        const size_t n = slurp(argv[2], buf, sizeof buf);
        int st;
        if (@p@_init(&net, 987654321u) != @P@_OK) die("init");   /* other weights, other PRNG state */
        st = (int)@p@_checkpoint_load(&net, buf, n);
        if (st != @P@_OK) { printf("load %d\n", st); return 1; }
        train(argv[5], strtoul(argv[3], NULL, 10), strtoul(argv[4], NULL, 10));
        save(argv[6]);
        printf("crc %lu rng %llu steps %lu epoch %lu\n", (unsigned long)@p@_params_crc32(&net),
               (unsigned long long)net.rng_state, (unsigned long)net.steps, (unsigned long)net.epoch);
        return 0;
    }
    if (strcmp(cmd, "load") == 0 && argc == 3) {           /* load IN: status, and whether ctx changed */
        const size_t n = slurp(argv[2], buf, sizeof buf);
        int st;
        if (@p@_init(&net, 7u) != @P@_OK) die("init");
        memcpy(&copy, &net, sizeof net);
        st = load_exact(buf, n);
        printf("%d %d\n", st, changed());
        return 0;
    }
    if (strcmp(cmd, "fuzz") == 0 && argc == 3) {           /* fuzz IN: every bit flip, every truncation */
        const size_t n = slurp(argv[2], buf, sizeof buf);
        unsigned long touched = 0;
        if (n != @P@_CHECKPOINT_BYTES) die("fuzz needs a whole checkpoint");
        if (@p@_checkpoint_load(&probe, buf, n) != @P@_OK) die("the intact checkpoint does not load");
        if (@p@_init(&net, 7u) != @P@_OK) die("init");
        memcpy(&copy, &net, sizeof net);
        for (size_t bit = 0; bit < 8u * n; bit++) {
            buf[bit / 8u] ^= (uint8_t)(1u << (bit % 8u));
            printf("F %d\n", (int)@p@_checkpoint_load(&net, buf, n));
            buf[bit / 8u] ^= (uint8_t)(1u << (bit % 8u));
            touched += (unsigned long)changed();
        }
        for (size_t len = 0; len < n; len++) {
            printf("T %d\n", load_exact(buf, len));
            touched += (unsigned long)changed();
        }
        buf[n] = 0u;
        printf("X %d\n", load_exact(buf, n + 1u));
        touched += (unsigned long)changed();
        printf("changed %lu\n", touched);
        return 0;
    }
    if (strcmp(cmd, "stream") == 0 && argc == 5) {         /* stream IN CHUNK OUT: load, then _read() in chunks */
        const size_t n = slurp(argv[2], buf, sizeof buf);
        const uint32_t chunk = (uint32_t)strtoul(argv[3], NULL, 10);
        FILE *f;
        if (@p@_checkpoint_load(&net, buf, n) != @P@_OK) die("load");
        memcpy(&copy, &net, sizeof net);
        f = fopen(argv[4], "wb");
        if (f == NULL) die(argv[4]);
        for (uint32_t at = 0; at < @P@_CHECKPOINT_BYTES; at += chunk) {
            const uint32_t len = @P@_CHECKPOINT_BYTES - at < chunk ? @P@_CHECKPOINT_BYTES - at : chunk;
            if (@p@_checkpoint_read(&net, at, out, len) != @P@_OK) die("read");
            if (fwrite(out, 1, len, f) != len) die("write");
        }
        if (fclose(f) != 0) die("close");
        printf("%d %d %d %d %d %d\n", (int)@p@_checkpoint_read(&net, @P@_CHECKPOINT_BYTES, out, 0u),
               (int)@p@_checkpoint_read(&net, @P@_CHECKPOINT_BYTES - 1u, out, 2u),
               (int)@p@_checkpoint_read(&net, @P@_CHECKPOINT_BYTES + 1u, out, 0u),
               (int)@p@_checkpoint_read(NULL, 0u, out, 1u), (int)@p@_checkpoint_read(&net, 0u, NULL, 1u),
               changed());
        return 0;
    }
    if (strcmp(cmd, "api") == 0 && argc == 2) {            /* argument errors of save and load */
        size_t written = 123u;
        int untouched = 1, st;
        if (@p@_init(&net, 1u) != @P@_OK) die("init");
        memset(out, 0xAA, sizeof out);
        st = (int)@p@_checkpoint_save(&net, out, @P@_CHECKPOINT_BYTES - 1u, &written);
        printf("%d %lu", st, (unsigned long)written);
        for (size_t i = 0; i < sizeof out; i++) untouched &= out[i] == 0xAAu;
        printf(" %d", untouched);
        printf(" %d", (int)@p@_checkpoint_save(NULL, out, sizeof out, NULL));
        printf(" %d", (int)@p@_checkpoint_save(&net, NULL, sizeof out, NULL));
        printf(" %d", (int)@p@_checkpoint_load(NULL, out, 10u));
        printf(" %d", (int)@p@_checkpoint_load(&net, NULL, 10u));
        printf(" %d\n", (int)@p@_checkpoint_save(&net, out, @P@_CHECKPOINT_BYTES, NULL));
        return 0;
    }
    die("usage");
    return 2;
}
"""


class Tool:
    """The generated model of one spec plus TOOL, compiled once per spec text."""

    def __init__(self, model: Model, work: Path) -> None:
        compiled = compile_model(model)
        self.model, self.program = model, compiled.program
        self.fmt = checkpoint.format_of(model)
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        for name, text in compiled.files.items():
            (work / name).write_text(text)
        p = model.name
        (work / "ck_tool.c").write_text(TOOL.replace("@p@", p).replace("@P@", p.upper()))
        self.exe = work / "ck_tool"
        cmd = ["gcc", *CFLAGS, *SANITIZE, "-o", str(self.exe), str(work / "ck_tool.c"), str(work / f"{p}.c")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr

    def run(self, *args: object, ok: bool = True) -> str:
        proc = subprocess.run([str(self.exe), *map(str, args)], capture_output=True, text=True)
        if ok:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def batches(self, steps: int, seed: int) -> tuple[Path, np.ndarray, np.ndarray]:
        xs, ys = make_batches(self.model, steps, seed, "random")
        path = self.work / f"batches-{steps}-{seed}.bin"
        path.write_bytes(b"".join(xs[s].tobytes() + ys[s].tobytes() for s in range(steps)))
        return path, xs, ys

    def train(self, seed: int, lr_inv: int, epoch: int, steps: int, batches: Path, name: str) -> bytes:
        out = self.work / name
        self.run("train", seed, lr_inv, epoch, steps, batches, out)
        return out.read_bytes()

    def load(self, data: bytes) -> tuple[int, bool]:
        path = self.work / "in.ngck"
        path.write_bytes(data)
        status, changed = self.run("load", path).split()
        return int(status), changed == "1"


_TOOLS: dict[str, Tool] = {}


@pytest.fixture(scope="module")
def tool(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    def get(model: Model) -> Tool:
        key = repr(model)
        if key not in _TOOLS:
            _TOOLS[key] = Tool(model, tmp_path_factory.mktemp(model.name))
        return _TOOLS[key]
    return get


def reference_checkpoint(model: Model, seed: int, lr_inv: int, epoch: int, xs: np.ndarray, ys: np.ndarray,
                         steps: int) -> bytes:
    """The Python writer fed with the NumPy reference after `steps` steps: independent of the C."""
    ref = reference.Model(model, seed=seed)
    ref.lr_inv = lr_inv
    for s in range(steps):
        ref.train_step(xs[s], ys[s])
    state = checkpoint.State(ref.rng.state, ref.rng.inc, ref.lr_inv, ref.steps, epoch)
    return checkpoint.encode(checkpoint.format_of(model), ref.params, state)


def variant(spec: str, old: str, new: str) -> Model:
    text = (SPECS / spec).read_text()
    assert old in text
    return nitrogen.parse_spec_text(text.replace(old, new), str(SPECS / spec))


def with_crc(data: bytes | bytearray) -> bytes:
    """Bytes edited after the CRC was computed, with a CRC that matches again (to reach the range checks)."""
    out = bytearray(data)
    struct.pack_into("<I", out, 24, zlib.crc32(bytes(out[28:]), zlib.crc32(bytes(out[:24]))))
    return bytes(out)


def code_of(fmt: checkpoint.CheckpointFormat, data: bytes) -> str:
    try:
        checkpoint.decode(fmt, data)
    except NitrogenError as exc:
        assert len(exc.diagnostics) == 1
        return exc.diagnostics[0].code
    return "ok"


def expected_flip(offset: int) -> str:
    """The status kind a flipped bit at byte `offset` must give (the header's field order)."""
    for end, name in ((4, "ERR_MAGIC"), (8, "ERR_VERSION"), (16, "ERR_SPEC"), (24, "ERR_LENGTH")):
        if offset < end:
            return name
    return "ERR_CRC"


# -- (1) and (2): C and Python write the same bytes and read each other's -----------------------------------------

@pytest.mark.parametrize("spec", ("tiny_mlp", "tiny_cnn", "tiny_reference", "tiny_saturate"))
def test_c_save_equals_python_writer_fed_by_the_reference(tool, spec: str) -> None:  # type: ignore[no-untyped-def]
    """Two independent computations: the C trains and saves; the reference trains and the Python writer encodes."""
    t = tool(load(f"{spec}.yaml"))
    steps, seed, lr_inv, epoch = 5, 11, 1536, 3
    batches, xs, ys = t.batches(steps, seed)
    c_bytes = t.train(seed, lr_inv, epoch, steps, batches, "c.ngck")
    py_bytes = reference_checkpoint(t.model, seed, lr_inv, epoch, xs, ys, steps)
    assert len(c_bytes) == t.fmt.total_bytes == t.program.constant("PARAMS_COUNT") * 4 + 60
    assert c_bytes == py_bytes
    # The Python reader parses the C's bytes into the reference's state.
    ck = checkpoint.decode(t.fmt, c_bytes)
    assert (ck.state.lr_inv, ck.state.steps, ck.state.epoch, ck.state.rng_inc) == (lr_inv, steps, epoch, 1)


@pytest.mark.parametrize("spec", ("tiny_mlp", "tiny_reference"))
def test_c_loads_python_checkpoints_with_extreme_values(tool, spec: str) -> None:  # type: ignore[no-untyped-def]
    """Every parameter at an end of its range, counters and PRNG words with the top bit set: the C loads the
    Python bytes and saves them back unchanged (sign handling without implementation-defined conversions)."""
    t = tool(load(f"{spec}.yaml"))
    params = {p.export: np.where(np.arange(int(np.prod(p.shape))) % 3 == 0, p.lo, p.hi).reshape(p.shape)
              for p in t.fmt.params}
    state = checkpoint.State((1 << 64) - 3, (1 << 63) + 5, t.fmt.lr_inv_max, (1 << 32) - 1, (1 << 31) + 7)
    data = checkpoint.encode(t.fmt, params, state)
    path = t.work / "extreme.ngck"
    path.write_bytes(data)
    batches, _, _ = t.batches(1, 0)
    t.run("resume", path, 0, 0, batches, t.work / "back.ngck")
    assert (t.work / "back.ngck").read_bytes() == data
    back = checkpoint.decode(t.fmt, data)
    assert back.state == state and all(np.array_equal(back.params[k], v) for k, v in params.items())


def test_native_backend_saves_and_loads_through_the_c() -> None:
    from nitrogen.native import Native

    model = load("tiny_cnn.yaml")
    compiled = compile_model(model)
    xs, ys = make_batches(model, 3, 4, "random")
    native = Native(compiled, 4)
    for s in range(3):
        native.train_step(xs[s], ys[s])
    native.epoch = 2
    data = native.checkpoint_save()
    assert data == reference_checkpoint(model, 4, model.train.lr_inv, 2, xs, ys, 3)
    fresh = Native(compiled, 99)
    fresh.checkpoint_load(data)
    assert fresh.state == native.state and fresh.checkpoint_save() == data
    bad = bytearray(data)
    bad[100] ^= 4
    with pytest.raises(NitrogenError) as exc:
        fresh.checkpoint_load(bytes(bad), "bad.ngck")
    assert exc.value.diagnostics[0].code == "E426" and fresh.checkpoint_save() == data


# -- (3): every single-bit flip and every truncation is rejected, with the right kind, ctx untouched ---------------

def test_c_rejects_every_flip_and_truncation_and_leaves_ctx_untouched(tool) -> None:  # type: ignore[no-untyped-def]
    t = tool(load("tiny_mlp.yaml"))
    batches, _, _ = t.batches(2, 1)
    data = t.train(1, 0, 1, 2, batches, "fuzz.ngck")
    n = len(data)
    lines = t.run("fuzz", t.work / "fuzz.ngck").split("\n")
    flips = [int(line[2:]) for line in lines if line.startswith("F ")]
    cuts = [int(line[2:]) for line in lines if line.startswith("T ")]
    extra = [int(line[2:]) for line in lines if line.startswith("X ")]
    assert len(flips) == 8 * n == 18016 and len(cuts) == n == 2252 and len(extra) == 1
    want = [CODE[expected_flip(bit // 8)] for bit in range(8 * n)]
    assert flips == want
    assert cuts == [CODE["ERR_TRUNCATED"]] * n and extra == [CODE["ERR_LENGTH"]]
    assert "changed 0" in lines, lines[-3:]       # no rejected load wrote a single byte of the context
    counts = {name: flips.count(CODE[name]) for name in ("ERR_MAGIC", "ERR_VERSION", "ERR_SPEC", "ERR_LENGTH",
                                                            "ERR_CRC")}
    print(f"C: {len(flips)} bit flips {counts}, {len(cuts)} truncations, 1 extension: all rejected, ctx untouched")


def test_python_rejects_every_flip_and_truncation() -> None:
    model = load("tiny_mlp.yaml")
    fmt = checkpoint.format_of(model)
    xs, ys = make_batches(model, 2, 1, "random")
    data = reference_checkpoint(model, 1, model.train.lr_inv, 1, xs, ys, 2)
    assert code_of(fmt, data) == "ok"
    buf = bytearray(data)
    got = []
    for bit in range(8 * len(buf)):
        buf[bit // 8] ^= 1 << (bit % 8)
        got.append(code_of(fmt, bytes(buf)))
        buf[bit // 8] ^= 1 << (bit % 8)
    assert got == [checkpoint.STATUS_CODES[expected_flip(bit // 8)] for bit in range(8 * len(buf))]
    assert [code_of(fmt, data[:k]) for k in range(len(data))] == ["E424"] * len(data)
    assert code_of(fmt, data + b"\0") == "E425"
    print(f"Python: {len(got)} bit flips and {len(data)} truncations rejected")


def test_range_checks_behind_a_valid_crc(tool) -> None:  # type: ignore[no-untyped-def]
    """CRC fine, content invalid: a weight outside its range, lr_inv 0 or too large, an even PCG increment."""
    t = tool(load("tiny_mlp.yaml"))
    xs, ys = make_batches(t.model, 1, 2, "random")
    data = reference_checkpoint(t.model, 2, t.model.train.lr_inv, 0, xs, ys, 1)
    at = t.fmt.offsets
    last = t.fmt.params[-1]
    cases = {"weight above": (at["params"], "<i", 32768), "weight below": (last.offset + 4, "<i", -32768),
             "lr_inv 0": (at["lr_inv"], "<q", 0), "lr_inv above max": (at["lr_inv"], "<q", t.fmt.lr_inv_max + 1),
             "lr_inv negative": (at["lr_inv"], "<q", -5), "even increment": (at["rng_inc"], "<Q", 2)}
    for what, (offset, fmt, value) in cases.items():
        bad = bytearray(data)
        struct.pack_into(fmt, bad, offset, value)
        bad = bytearray(with_crc(bad))
        assert t.load(bytes(bad)) == (CODE["ERR_RANGE"], False), what
        assert code_of(t.fmt, bytes(bad)) == "E427", what
    # A future format version with a valid CRC is a version error, not corruption.
    newer = bytearray(data)
    struct.pack_into("<I", newer, 4, 2)
    assert t.load(with_crc(newer)) == (CODE["ERR_VERSION"], False)
    assert code_of(t.fmt, with_crc(newer)) == "E422"
    assert t.load(b"PK\x03\x04 a zip file") == (CODE["ERR_MAGIC"], False)
    assert t.load(data) == (CODE["OK"], True)


def test_save_and_load_argument_errors(tool) -> None:  # type: ignore[no-untyped-def]
    t = tool(load("tiny_mlp.yaml"))
    arg, ok = CODE["ERR_ARG"], CODE["OK"]
    # cap one byte short: ERR_ARG, *written = 0, buffer untouched; NULL pointers; then a real save.
    assert t.run("api").split() == [str(v) for v in (arg, 0, 1, arg, arg, arg, arg, ok)]


# -- (4): resume ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ("tiny_mlp", "tiny_cnn"))
def test_resume_equals_uninterrupted_training(tool, spec: str) -> None:  # type: ignore[no-untyped-def]
    """k steps, save, load into a fresh context (other seed), m more steps == k + m steps without a break."""
    t = tool(load(f"{spec}.yaml"))
    k, m, seed = 3, 4, 5
    batches, xs, ys = t.batches(k + m, seed)
    t.train(seed, 0, 1, k, batches, "first.ngck")
    report = t.run("resume", t.work / "first.ngck", k, m, batches, t.work / "resumed.ngck").split()
    straight = t.train(seed, 0, 1, k + m, batches, "straight.ngck")
    assert (t.work / "resumed.ngck").read_bytes() == straight   # parameters, PRNG, lr_inv, counters
    ref = checkpoint.decode(t.fmt, reference_checkpoint(t.model, seed, t.model.train.lr_inv, 1, xs, ys, k + m))
    crc = zlib.crc32(np.concatenate([v.reshape(-1) for v in ref.params.values()]).astype("<i4").tobytes())
    assert report == ["crc", str(crc), "rng", str(ref.state.rng_state), "steps", str(k + m), "epoch", "1"]


def test_train_resume_continues_the_run_exactly(tmp_path: Path) -> None:
    """`nitrogen train` for 2 epochs == 1 epoch, then --resume for the second (C backend and NumPy)."""
    from nitrogen.data import Dataset
    from nitrogen.train import train

    model = load("tiny_mlp.yaml")
    rng = np.random.default_rng(5)
    data = Dataset("synthetic", rng.integers(0, 256, (48, 1, 6, 5), dtype=np.uint8),
                   rng.integers(0, 4, 48, dtype=np.uint8), rng.integers(0, 256, (16, 1, 6, 5), dtype=np.uint8),
                   rng.integers(0, 4, 16, dtype=np.uint8), 4, "test")
    for backend in ("c", "numpy"):
        d = tmp_path / backend
        whole = train(model, data, d / "whole", seed=3, epochs=2, progress=False, backend=backend)
        train(model, data, d / "run", seed=3, epochs=1, progress=False, backend=backend)
        rest = train(model, data, d / "run", seed=3, epochs=2, progress=False, backend=backend, resume=True)
        assert [r.epoch for r in rest.records] == [1, 2] and rest.first_epoch == 2
        strip = [(r.train_loss, r.train_correct, r.test_correct, r.lr_inv) for r in whole.records]
        assert strip == [(r.train_loss, r.train_correct, r.test_correct, r.lr_inv) for r in rest.records]
        for name in ("last.ngck", "best.ngck", "metrics.csv", "trainer.json"):
            assert (d / "run" / name).read_bytes() == (d / "whole" / name).read_bytes(), name
    assert (tmp_path / "c" / "whole" / "last.ngck").read_bytes() == \
        (tmp_path / "numpy" / "whole" / "last.ngck").read_bytes()


# -- (5): another network ---------------------------------------------------------------------------------------

def test_spec_hash_covers_the_arithmetic_not_the_training_schedule() -> None:
    base = checkpoint.format_of(load("tiny_mlp.yaml")).spec_hash
    same = [("batch_size: 8", "batch_size: 1"), ("name: tiny_mlp", "name: tiny_mlp_device"),
            ("fwd_decay_inv: 3000", "fwd_decay_inv: 2000"), ("train:\n", "train:\n  lr_inv: 97\n  epochs: 3\n"),
            ("train:\n", "train:\n  amp_model: 100\n  seed: 9\n")]
    other = [("slope_inv: 3", "slope_inv: 4"), ("num_classes: 4", "num_classes: 4\nweight_bits: 12"),
             ("num_classes: 4", "num_classes: 4\nsemantics: reference"), ("out_features: 7", "out_features: 6"),
             ("input: [1, 6, 5]", "input: [1, 5, 6]")]
    for old, new in same:
        assert checkpoint.format_of(variant("tiny_mlp.yaml", old, new)).spec_hash == base, new
    for old, new in other:
        assert checkpoint.format_of(variant("tiny_mlp.yaml", old, new)).spec_hash != base, new


def test_another_network_is_rejected_and_a_batch_1_build_accepts(tool) -> None:  # type: ignore[no-untyped-def]
    model = load("tiny_mlp.yaml")
    xs, ys = make_batches(model, 2, 3, "random")
    data = reference_checkpoint(model, 3, model.train.lr_inv, 1, xs, ys, 2)
    slope = variant("tiny_mlp.yaml", "slope_inv: 3", "slope_inv: 4")
    assert tool(slope).load(data) == (CODE["ERR_SPEC"], False)
    other = checkpoint.format_of(slope)
    with pytest.raises(NitrogenError) as exc:
        checkpoint.decode(other, data, "run/checkpoint.ngck", owner="tiny_mlp")
    diag = exc.value.diagnostics[0]
    assert diag.code == "E423"
    mine = checkpoint.format_of(model).spec_hash
    assert f"{mine:016x}" in diag.message and f"{other.spec_hash:016x}" in diag.message and "'tiny_mlp'" in diag.message
    # Trained at batch 8 on a PC, fine-tuned at batch 1 on a device: the same network, so it loads.
    device = replace(model, train=replace(model.train, batch_size=1))
    assert tool(device).load(data) == (CODE["OK"], True)


# -- (6): the command line --------------------------------------------------------------------------------------

def nitrogen_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nitrogen", *args], capture_output=True, text=True, cwd=ROOT)


def test_evaluate_rejects_bad_checkpoints_with_a_diagnostic(tmp_path: Path) -> None:
    """The checkpoint is read before the data set, so these need no data set."""
    model = load("tiny_mlp.yaml")
    xs, ys = make_batches(model, 1, 0, "random")
    data = reference_checkpoint(model, 0, model.train.lr_inv, 1, xs, ys, 1)
    corrupt = bytearray(data)
    corrupt[500] ^= 0x10
    slope = variant("tiny_mlp.yaml", "slope_inv: 3", "slope_inv: 4")
    foreign = reference_checkpoint(slope, 0, slope.train.lr_inv, 1, xs, ys, 0)
    cases = {"corrupt.ngck": (bytes(corrupt), "E426", "CRC-32"), "short.ngck": (data[:1000], "E424", "1000 of 2252"),
             "text.ngck": (b"hello", "E421", "not a nitrogen checkpoint"),
             "foreign.ngck": (foreign, "E423", "spec hash"), "lonely.ngck": (data, "E428", "normalisation")}
    for name, (content, code, words) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        proc = nitrogen_cli("evaluate", "specs/tiny_mlp.yaml", "--params", str(path), "--dataset", "mnist5k")
        assert proc.returncode == 1, (name, proc.stderr)
        assert f"error[{code}]" in proc.stderr and words in proc.stderr and str(path) in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


ONE_WEIGHT_CONV = ("name: one_weight\ninput: [1, 4, 4]\nnum_classes: 2\nlayers:\n"
                   "  - {kind: conv, out_channels: 1, kernel: 1}\ntrain: {batch_size: 2}\n")


@pytest.mark.parametrize("spec", ["tiny_mlp.yaml", "tiny_cnn.yaml", "tiny_reference.yaml", "one-weight conv"])
def test_streamed_checkpoint_equals_the_python_writer(tool, spec: str) -> None:  # type: ignore[no-untyped-def]
    """`<name>_checkpoint_read()` in chunks of any size (1 byte, chunks that split the CRC field and the
    parameters, the whole image) gives exactly the bytes of the Python writer fed by the reference; bad
    ranges and NULL pointers are ERR_ARG, and the context is never modified."""
    # The one-weight conv: a parameter tensor of a single element (found by the property tests).
    model = nitrogen.parse_spec_text(ONE_WEIGHT_CONV, "one.yaml") if spec == "one-weight conv" else load(spec)
    t = tool(model)
    _, xs, ys = t.batches(3, 5)
    data = reference_checkpoint(model, 11, 700, 4, xs, ys, 3)
    source = t.work / "stream-in.ngck"
    source.write_bytes(data)
    for chunk in (1, 5, 26, 27, 4096):
        out = t.work / f"stream-{chunk}.ngck"
        codes = t.run("stream", source, chunk, out).split()
        assert out.read_bytes() == data, chunk
        ok, arg = str(CODE["OK"]), str(CODE["ERR_ARG"])
        assert codes == [ok, arg, arg, arg, arg, "0"], codes
