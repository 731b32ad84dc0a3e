#!/usr/bin/env python3
"""Time one training step (at the spec's batch size) of the generated C against the NumPy reference.

    python benchmarks/bench_train_step.py                 # MLP1-MLP4 and the width-scaled VGG8Bs, both modes (~6 min)
    python benchmarks/bench_train_step.py --quick         # MLP1-MLP3, fewer steps (< 1 min)
    python benchmarks/bench_train_step.py --specs mlp1_mnist --steps 200 --modes nitrogen

For every spec and semantics mode the script measures
  * the NumPy reference, `nitrogen.reference.Model.train_step` (the baseline, measured in the same run);
  * the generated C built with `gcc -O2`, `gcc -O3 -march=native` and, when clang is installed, `clang -O3`.
Both sides start from `init(seed 0)`, do WARMUP untimed steps, then time N steps on the same
deterministic int8 batches (`nitrogen.verify.make_batches`); each figure is the median of RUNS runs
of N steps (a C run is a fresh process). The C timing uses clock_gettime(CLOCK_MONOTONIC) in a small
host-side bench main written to a temporary directory. It only prints; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SPECS_DIR = REPO / "specs"
sys.path.insert(0, str(REPO))  # use this checkout's nitrogen, from any working directory

import numpy as np  # noqa: E402

import nitrogen  # noqa: E402
from nitrogen import reference  # noqa: E402
from nitrogen.layout import plan  # noqa: E402
from nitrogen.pipeline import compile_model  # noqa: E402
from nitrogen.spec import with_semantics  # noqa: E402
from nitrogen.verify import make_batches  # noqa: E402

# Timed steps per run, chosen so that the default invocation stays around 3-4 minutes on 2 cores
# (MLP4's reference step takes ~1.2-1.6 s).
DEFAULT_SPECS = ("mlp1_mnist", "mlp2_fmnist", "mlp3_mnist", "mlp4_cifar10", "vgg8b_fmnist_w8", "vgg8b_cifar10_w8")
QUICK_SPECS = ("mlp1_mnist", "mlp2_fmnist", "mlp3_mnist")
STEPS = {"mlp1_mnist": 100, "mlp2_fmnist": 50, "mlp3_mnist": 10, "mlp4_cifar10": 3}
QUICK_STEPS = {"mlp1_mnist": 30, "mlp2_fmnist": 15, "mlp3_mnist": 4, "mlp4_cifar10": 2}
FALLBACK_STEPS = 5          # a spec not listed above
WARMUP = 2                  # untimed steps before every timed run (C) / before the first run (reference)
RUNS = 3                    # median of this many runs
MAX_DISTINCT_BATCHES = 8    # batches are cycled; generating them in Python is the slow part for big inputs
DATA_SEED = 1
MODES = ("nitrogen", "reference")

# (column label, compiler, flags). The first gcc -O3 build is the one the speed-up column uses.
BUILDS = (
    ("C gcc -O2", "gcc", ("-O2",)),
    ("C gcc -O3 -march=native", "gcc", ("-O3", "-march=native")),
    ("C clang -O3", "clang", ("-O3",)),
)
SPEEDUP_BUILD = "C gcc -O3 -march=native"

BENCH_MAIN = r"""/* Host-side bench main for @NAME@ (written by benchmarks/bench_train_step.py). */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "@NAME@.h"

#define X_LEN ((size_t)@UPPER@_BATCH * (size_t)@UPPER@_INPUT_LEN)
#define REC_LEN (X_LEN + (size_t)@UPPER@_BATCH)

static @NAME@_ctx_t ctx;   /* @UPPER@_CTX_BYTES bytes in .bss */

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

/* usage: bench BATCHES_FILE WARMUP STEPS
   BATCHES_FILE: uint32 count, then per batch BATCH*INPUT_LEN int8 inputs and BATCH uint8 labels.
   prints: nanoseconds per timed step, global loss of the first warm-up step */
int main(int argc, char **argv) {
    FILE *f;
    uint32_t count = 0;
    unsigned char *data;
    long warmup, steps, i;
    long long first_loss = -1;
    int64_t t0 = 0, t1;
    @NAME@_stats_t stats;

    if (argc != 4) { fprintf(stderr, "usage: %s BATCHES WARMUP STEPS\n", argv[0]); return 2; }
    warmup = atol(argv[2]);
    steps = atol(argv[3]);
    if (steps < 1 || warmup < 0) { fprintf(stderr, "bad step counts\n"); return 2; }
    f = fopen(argv[1], "rb");
    if (!f || fread(&count, sizeof count, 1, f) != 1 || count == 0) { fprintf(stderr, "bad batch file\n"); return 2; }
    data = (unsigned char *)malloc((size_t)count * REC_LEN);
    if (!data || fread(data, REC_LEN, count, f) != count) { fprintf(stderr, "short batch file\n"); return 2; }
    fclose(f);

    if (@NAME@_init(&ctx, 0u) != @UPPER@_OK) { fprintf(stderr, "init failed\n"); return 1; }
    for (i = 0; i < warmup + steps; i++) {
        const unsigned char *rec = data + (size_t)(i % (long)count) * REC_LEN;
        if (i == warmup) t0 = now_ns();
        if (@NAME@_train_step(&ctx, (const int8_t *)rec, rec + X_LEN, &stats) != @UPPER@_OK) {
            fprintf(stderr, "train_step failed at step %ld\n", i);
            return 1;
        }
        if (i == 0) first_loss = (long long)stats.loss;
    }
    t1 = now_ns();
    printf("%lld %lld\n", (long long)((t1 - t0) / steps), first_loss);
    free(data);
    return 0;
}
"""


# ----------------------------------------------------------------------------------------------------------
# environment
# ----------------------------------------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def compiler_version(cc: str) -> str | None:
    if not shutil.which(cc):
        return None
    out = subprocess.run([cc, "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0].strip() if out.returncode == 0 and out.stdout else None


# ----------------------------------------------------------------------------------------------------------
# measurements
# ----------------------------------------------------------------------------------------------------------

def resolve_spec(arg: str) -> Path:
    """A spec given as a path (absolute or relative to the cwd) or as a name in the repo's specs/."""
    p = Path(arg)
    if p.is_file():
        return p.resolve()
    for cand in (SPECS_DIR / arg, SPECS_DIR / f"{arg}.yaml", SPECS_DIR / f"{arg}.ng"):
        if cand.is_file():
            return cand
    sys.exit(f"{Path(sys.argv[0]).stem}: no spec '{arg}' (looked in the working directory and {SPECS_DIR})")


def time_reference(model, xs: np.ndarray, ys: np.ndarray, steps: int, runs: int) -> tuple[float, int]:
    """Median over `runs` of the mean seconds per step; also the loss of the first warm-up step."""
    ref = reference.Model(model, seed=0)
    n = len(xs)
    first_loss = -1
    for i in range(WARMUP):
        stats = ref.train_step(xs[i % n], ys[i % n])
        if i == 0:
            first_loss = stats.loss
    k = WARMUP
    per_run = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(steps):
            ref.train_step(xs[k % n], ys[k % n])
            k += 1
        per_run.append((time.perf_counter() - t0) / steps)
    return statistics.median(per_run), first_loss


def build_bench(work: Path, name: str, cc: str, flags: tuple[str, ...], tag: str) -> Path | str:
    exe = work / f"bench_{tag}"
    cmd = [cc, "-std=c99", *flags, "-o", str(exe), str(work / "bench_main.c"), str(work / f"{name}.c")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return f"build failed: {' '.join(cmd)}\n{proc.stderr.strip()}"
    return exe


def time_c(exe: Path, batches: Path, steps: int, runs: int) -> tuple[float, int] | str:
    """Median over `runs` fresh processes of the nanoseconds per step; also the first warm-up loss."""
    per_run = []
    first_loss = -1
    for _ in range(runs):
        proc = subprocess.run([str(exe), str(batches), str(WARMUP), str(steps)], capture_output=True, text=True)
        if proc.returncode != 0:
            return f"run failed (exit {proc.returncode}): {proc.stderr.strip()}"
        ns, first_loss = (int(v) for v in proc.stdout.split())
        per_run.append(ns * 1e-9)
    return statistics.median(per_run), first_loss


def write_c_bench(model, compiled, work: Path, steps: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """Write the generated C, the bench main and the batch file into the new directory `work`.

    Returns the batch file and the batches themselves (inputs (n, B, C, H, W) int8, labels (n, B) uint8)."""
    name = model.name
    work.mkdir(parents=True)
    for fname, text in compiled.files.items():
        (work / fname).write_text(text)
    (work / "bench_main.c").write_text(BENCH_MAIN.replace("@NAME@", name).replace("@UPPER@", name.upper()))

    n_batches = min(WARMUP + steps, MAX_DISTINCT_BATCHES)
    xs, ys = make_batches(model, n_batches, DATA_SEED, "random")
    blob = bytearray(np.array([n_batches], dtype=np.uint32).tobytes())
    for s in range(n_batches):
        blob += xs[s].astype(np.int8).tobytes() + ys[s].astype(np.uint8).tobytes()
    batches = work / "batches.bin"
    batches.write_bytes(bytes(blob))
    return batches, xs, ys


def bench_one(path: Path, mode: str, steps: int, runs: int, builds, work_root: Path) -> dict:
    model = with_semantics(nitrogen.load_spec(path), mode)
    compiled = compile_model(model)
    name, upper = model.name, model.name.upper()
    header = compiled.files[f"{name}.h"]
    ctx_bytes = plan(compiled.program, compiled.report).ctx_bytes
    m = re.search(rf"#define {upper}_CTX_BYTES (\d+)u", header)
    if m and int(m.group(1)) != ctx_bytes:
        print(f"  note: {name}: header says CTX_BYTES {m.group(1)}, layout.plan says {ctx_bytes}", file=sys.stderr)
    row = {"spec": name, "params": compiled.program.constant("PARAMS_COUNT"), "ctx_bytes": ctx_bytes,
           "batch": model.train.batch_size, "steps": steps, "times": {}, "notes": []}

    work = work_root / f"{name}-{mode}"
    batches, xs, ys = write_c_bench(model, compiled, work, steps)

    ref_s, ref_loss = time_reference(model, xs, ys, steps, runs)
    row["times"]["reference"] = ref_s
    for label, cc, flags in builds:
        exe = build_bench(work, name, cc, flags, re.sub(r"\W+", "_", label))
        result = time_c(exe, batches, steps, runs) if isinstance(exe, Path) else exe
        if isinstance(result, str):
            row["times"][label] = None
            row["notes"].append(f"{label}: {result}")
            continue
        row["times"][label] = result[0]
        if result[1] != ref_loss:  # same seed, same first batch: a sanity check, not a verification
            row["notes"].append(f"{label}: first-step loss {result[1]} != reference {ref_loss}")
    return row


# ----------------------------------------------------------------------------------------------------------
# output
# ----------------------------------------------------------------------------------------------------------

def fmt_ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 10 else f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"


def print_table(mode: str, rows: list[dict], labels: list[str]) -> None:
    head = ["spec", "params", "ctx bytes", "steps", "reference ms/step", *(f"{lb} ms/step" for lb in labels),
            f"speed-up vs reference ({SPEEDUP_BUILD.removeprefix('C ')})"]
    align = ["---", "--:", "--:", "--:", "--:", *("--:" for _ in labels), "--:"]
    print(f"\nsemantics: {mode}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join(align) + "|")
    for r in rows:
        t = r["times"]
        fast = t.get(SPEEDUP_BUILD)
        speed = f"{t['reference'] / fast:.1f}x" if fast else "n/a"
        cells = [r["spec"], f"{r['params']:,}".replace(",", " "), f"{r['ctx_bytes']:,}".replace(",", " "),
                 str(r["steps"]), fmt_ms(t["reference"]), *(fmt_ms(t.get(lb)) for lb in labels), speed]
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        for note in r["notes"]:
            print(f"  note: {r['spec']}: {note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", nargs="+", metavar="SPEC",
                    help="spec names in specs/ or paths (default: MLP1-MLP4; MLP1-MLP3 with --quick)")
    ap.add_argument("--steps", type=int, metavar="N", help="timed steps per run for every spec "
                    "(default: per spec, fewer for big specs)")
    ap.add_argument("--runs", type=int, default=RUNS, metavar="R", help=f"median of R runs (default {RUNS})")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="semantics modes")
    ap.add_argument("--quick", action="store_true", help="MLP1-MLP3 only, fewer steps (under a minute)")
    args = ap.parse_args(argv)
    if (args.steps is not None and args.steps < 1) or args.runs < 1:
        ap.error("--steps and --runs must be at least 1")

    specs = [resolve_spec(s) for s in (args.specs or (QUICK_SPECS if args.quick else DEFAULT_SPECS))]
    table = QUICK_STEPS if args.quick else STEPS
    versions = {cc: compiler_version(cc) for cc in sorted({cc for _, cc, _ in BUILDS})}
    builds = [b for b in BUILDS if versions[b[1]]]
    labels = [b[0] for b in builds]

    print(f"machine:   {cpu_model()}, nproc {nproc()}, {platform.system()} {platform.machine()}")
    for cc, version in versions.items():
        print(f"{cc + ':':<10} {version or 'not found (column skipped)'}")
    print(f"python:    {platform.python_version()}, numpy {np.__version__}, nitrogen {nitrogen.__version__}")
    print(f"protocol:  init(seed 0), {WARMUP} warm-up steps, then the median of {args.runs} runs of N timed steps "
          f"(C: fresh process per run, clock_gettime(CLOCK_MONOTONIC)); all builds add -std=c99")
    invocation = " ".join(["python", "benchmarks/bench_train_step.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"command:   {invocation}")

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nitrogen-bench-") as tmp:
        for mode in args.modes:
            rows = []
            for path in specs:
                steps = args.steps or table.get(path.stem, FALLBACK_STEPS)
                t0 = time.perf_counter()
                rows.append(bench_one(path, mode, steps, args.runs, builds, Path(tmp)))
                print(f"  [{mode}] {path.stem}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
            print_table(mode, rows, labels)
            sys.stdout.flush()
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
