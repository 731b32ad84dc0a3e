#!/usr/bin/env python3
"""Time one training step of the generated C against PyTorch FP32 training of the same network.

    python benchmarks/bench_vs_pytorch.py                  # MLP1-MLP3 and vgg8b_fmnist_w8 (~1-2 min)
    python benchmarks/bench_vs_pytorch.py --quick          # MLP1 and MLP2, fewer steps
    python benchmarks/bench_vs_pytorch.py --specs mlp1_mnist --steps 200 --runs 5

The starting point for the roadmap goal "kernels that beat PyTorch FP32 training while staying bit-exact".
For every spec, one training step at the spec's batch size (forward, loss, backward, weight update) takes:
  * C gcc -O2 / -O3 -march=native: the generated C in the spec's semantics mode, single thread, built and
    timed by bench_train_step.py's helpers (fresh process per run, deterministic int8 batches);
  * PyTorch backprop: the spec's forward layers in float32 (bias-free conv/linear, ReLU, the spec's pools and
    dropouts, flatten, the bias-free output linear), cross-entropy, end-to-end backprop, plain SGD;
  * PyTorch local-loss: NITRO-D's compute graph in float32. Each block's forward layer and ReLU see a detached
    input, its learning layers (conv blocks: the learning pool of docs/semantics.md#learning-pools, then
    flatten; then a linear to the classes) feed a mean-squared-error loss against 0/1 one-hot targets (the
    semantics' sum of squares up to a constant), the output linear has the same loss on its detached input
    (docs/semantics.md#backward-pass, #the-training-step); one backward over the summed losses, plain SGD;
  * the backprop model again with PyTorch's default thread count (all cores).
Torch gets the same int8 batches as the C, as float32. Each torch figure is the median over RUNS runs of N
timed steps in one process, after TORCH_WARMUP untimed steps. Accuracy is not compared. It only prints.
PyTorch is not a dependency of nitrogen: install it yourself (the CPU build is enough).
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_train_step, from any working directory

import numpy as np  # noqa: E402

import bench_train_step as bts  # noqa: E402  (also puts this checkout's nitrogen on sys.path)
import nitrogen  # noqa: E402
from nitrogen.pipeline import compile_model  # noqa: E402
from nitrogen.spec import AvgPool, ConvBlock, Dropout, LinearBlock, MaxPool, Model, learning_pool_search  # noqa: E402

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_SPECS = ("mlp1_mnist", "mlp2_fmnist", "mlp3_mnist", "vgg8b_fmnist_w8")
QUICK_SPECS = ("mlp1_mnist", "mlp2_fmnist")
STEPS = {"mlp1_mnist": 100, "mlp2_fmnist": 50, "mlp3_mnist": 10, "vgg8b_fmnist_w8": 5}
QUICK_STEPS = {"mlp1_mnist": 30, "mlp2_fmnist": 15}
TORCH_WARMUP = 5    # more than the C's 2: the first torch steps allocate and pick oneDNN kernels
LR = 1e-6           # small enough that float weights stay finite on unnormalised int8-range inputs; accuracy
                    # is not measured, and an SGD update costs the same whatever the rate
C_BUILDS = [b for b in bts.BUILDS if b[1] == "gcc"]   # (label, compiler, flags)
RATIO_BUILD = "C gcc -O3 -march=native"
COLUMNS = ("C gcc -O2", "C gcc -O3 -march=native", "PyTorch FP32 backprop 1 thread",
           "PyTorch FP32 local-loss 1 thread", "PyTorch FP32 backprop all threads")
INSTALL_HINT = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


# ----------------------------------------------------------------------------------------------------------
# torch models, built by walking the parsed spec
# ----------------------------------------------------------------------------------------------------------

class Stage:
    """One spec item: `fwd` (a block's forward layer + ReLU, or a pool/dropout/flatten) and, for a
    local-loss block, its learning layers `learn` (None for items without a local loss)."""

    def __init__(self, fwd: nn.Module, learn: nn.Module | None = None) -> None:
        self.fwd, self.learn = fwd, learn


def build_stages(model: Model) -> tuple[list[Stage], nn.Module]:
    """The spec's items in order, then the output layer (fresh parameters on every call)."""
    from torch import nn
    c, h, w = model.input_shape
    classes, flat = model.num_classes, False
    stages: list[Stage] = []
    for layer in model.layers:
        if isinstance(layer, ConvBlock):
            conv = nn.Conv2d(c, layer.out_channels, layer.kernel, padding=layer.padding, bias=False)
            c, h = layer.out_channels, h + 2 * layer.padding - layer.kernel + 1
            w = h  # CNN inputs are square (spec rule)
            kh, kw, ph, pw, _, _, d = learning_pool_search(c, h, layer.decoder_dim)
            pool_cls = nn.MaxPool2d if layer.learning_pool == "max" else nn.AvgPool2d  # avg: padding counts
            pool = [pool_cls((kh, kw), stride=(kh, kw), padding=(ph, pw))] if (kh, kw) != (1, 1) else []
            stages.append(Stage(nn.Sequential(conv, nn.ReLU()),
                                nn.Sequential(*pool, nn.Flatten(), nn.Linear(d, classes, bias=False))))
        elif isinstance(layer, LinearBlock):
            if not flat:  # a flatten is implied before the first linear block
                stages.append(Stage(nn.Flatten()))
                c, h, w, flat = c * h * w, 1, 1, True
            stages.append(Stage(nn.Sequential(nn.Linear(c, layer.out_features, bias=False), nn.ReLU()),
                                nn.Linear(layer.out_features, classes, bias=False)))
            c = layer.out_features
        elif isinstance(layer, (MaxPool, AvgPool)):
            stages.append(Stage((nn.MaxPool2d if isinstance(layer, MaxPool) else nn.AvgPool2d)(layer.kernel)))
            h, w = h // layer.kernel, w // layer.kernel
        elif isinstance(layer, Dropout):
            stages.append(Stage(nn.Dropout(layer.rate_pct / 100)))
        else:
            raise TypeError(f"unknown layer {layer!r}")
    out = nn.Sequential(*([] if flat else [nn.Flatten()]), nn.Linear(c * h * w, classes, bias=False))
    return stages, out


def backprop_step(model: Model) -> tuple[Callable[[torch.Tensor, torch.Tensor], float], int]:
    """Ordinary training: the forward layers end to end, cross-entropy, SGD. Returns (step, params)."""
    import torch
    stages, out = build_stages(model)
    net = torch.nn.Sequential(*(s.fwd for s in stages), out)
    opt = torch.optim.SGD(net.parameters(), lr=LR)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()
    return step, sum(p.numel() for p in net.parameters())


def local_loss_step(model: Model) -> tuple[Callable[[torch.Tensor, torch.Tensor], float], int]:
    """NITRO-D's graph in float: no gradient crosses a block boundary; every block and the output layer
    has its own squared-error loss against one-hot targets. Returns (step, params)."""
    import torch
    f = torch.nn.functional
    stages, out = build_stages(model)
    modules = torch.nn.ModuleList([out, *(m for s in stages for m in (s.fwd, s.learn) if m is not None)])
    opt = torch.optim.SGD(modules.parameters(), lr=LR)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        target = f.one_hot(y, model.num_classes).float()
        a, loss = x, x.new_zeros(())
        for s in stages:
            if s.learn is None:
                a = s.fwd(a)
                continue
            a = s.fwd(a.detach())  # the block's input is a constant for its update (docs/semantics.md#backward-pass)
            # mean, not the semantics' sum: the same gradients up to a constant, but float SGD stays finite
            loss = loss + f.mse_loss(s.learn(a), target, reduction="mean")
        loss = loss + f.mse_loss(out(a.detach()), target, reduction="mean")
        opt.zero_grad(set_to_none=True)
        loss.backward()  # the losses share no parameters: one backward = one per block
        opt.step()
        return loss.item()
    return step, sum(p.numel() for p in modules.parameters())


def time_torch(step: Callable, xs: list, ys: list, steps: int, runs: int) -> tuple[float, float]:
    """Median over `runs` of the mean seconds per step (one process); also the last loss."""
    n, loss = len(xs), 0.0
    for i in range(TORCH_WARMUP):
        step(xs[i % n], ys[i % n])
    k, per_run = TORCH_WARMUP, []
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step(xs[k % n], ys[k % n])
            k += 1
        per_run.append((time.perf_counter() - t0) / steps)
    return statistics.median(per_run), loss


# ----------------------------------------------------------------------------------------------------------
# one spec
# ----------------------------------------------------------------------------------------------------------

def bench_one(path: Path, steps: int, runs: int, work_root: Path, all_threads: int) -> dict:
    import torch
    model = nitrogen.load_spec(path)
    compiled = compile_model(model)
    params = compiled.program.constant("PARAMS_COUNT")
    row = {"spec": model.name, "params": params, "steps": steps, "times": {}, "notes": []}

    batches, xs, ys = bts.write_c_bench(model, compiled, work_root / model.name, steps)
    for label, cc, flags in C_BUILDS:
        exe = bts.build_bench(batches.parent, model.name, cc, flags, re.sub(r"\W+", "_", label))
        result = bts.time_c(exe, batches, steps, runs) if isinstance(exe, Path) else exe
        row["times"][label] = None if isinstance(result, str) else result[0]
        if isinstance(result, str):
            row["notes"].append(f"{label}: {result}")

    tx = [torch.from_numpy(x.astype(np.float32)) for x in xs]   # the C's int8 batches, as float32
    ty = [torch.from_numpy(y.astype(np.int64)) for y in ys]
    for label, make, threads in ((COLUMNS[2], backprop_step, 1), (COLUMNS[3], local_loss_step, 1),
                                 (COLUMNS[4], backprop_step, all_threads)):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        step, n_params = make(model)
        row["times"][label], loss = time_torch(step, tx, ty, steps, runs)
        if label == COLUMNS[3] and n_params != params:  # local-loss graph = nitrogen's parameter set
            row["notes"].append(f"local-loss torch model has {n_params} parameters, nitrogen {params}")
        if label == COLUMNS[2]:
            row["notes"].append(f"backprop torch model has {n_params} parameters (no learning layers)")
        if not np.isfinite(loss):
            row["notes"].append(f"{label}: loss became {loss} (non-finite floats may time differently)")
    torch.set_num_threads(all_threads)
    return row


def print_table(rows: list[dict]) -> None:
    print("\nsteps per run: " + ", ".join(f"{r['spec']} {r['steps']}" for r in rows))
    print("\n| spec | params | " + " | ".join(f"{c} ms" for c in COLUMNS)
          + f" | ratio ({COLUMNS[2]} / {RATIO_BUILD}; >1: C faster) |")
    print("|---|--:|" + "--:|" * len(COLUMNS) + "--:|")
    for r in rows:
        t = r["times"]
        fast, torch1 = t.get(RATIO_BUILD), t.get(COLUMNS[2])
        ratio = f"{torch1 / fast:.2f}" if fast and torch1 else "n/a"
        cells = [r["spec"], f"{r['params']:,}".replace(",", " "),
                 *(bts.fmt_ms(t.get(c)) for c in COLUMNS), ratio]
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        for note in r["notes"]:
            print(f"  note: {r['spec']}: {note}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", nargs="+", metavar="SPEC", help="spec names in specs/ or paths "
                    f"(default: {', '.join(DEFAULT_SPECS)}; {', '.join(QUICK_SPECS)} with --quick)")
    ap.add_argument("--steps", type=int, metavar="N", help="timed steps per run for every spec (default: per spec)")
    ap.add_argument("--runs", type=int, default=bts.RUNS, metavar="R", help=f"median of R runs (default {bts.RUNS})")
    ap.add_argument("--quick", action="store_true", help="MLP1 and MLP2 only, fewer steps")
    args = ap.parse_args(argv)
    if (args.steps is not None and args.steps < 1) or args.runs < 1:
        ap.error("--steps and --runs must be at least 1")
    try:
        import torch
    except ImportError:
        print(f"bench_vs_pytorch: PyTorch is not installed (it is not a nitrogen dependency); "
              f"install the CPU build with: {INSTALL_HINT}", file=sys.stderr)
        return 2

    specs = [bts.resolve_spec(s) for s in (args.specs or (QUICK_SPECS if args.quick else DEFAULT_SPECS))]
    table = QUICK_STEPS if args.quick else STEPS
    steps = {p.stem: args.steps or table.get(p.stem, STEPS.get(p.stem, bts.FALLBACK_STEPS)) for p in specs}
    all_threads = torch.get_num_threads()  # PyTorch's default, read before anything sets it
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "?")()

    print(f"machine:   {bts.cpu_model()}, nproc {bts.nproc()}, {platform.system()} {platform.machine()}")
    print(f"gcc:       {bts.compiler_version('gcc') or 'not found'}")
    print(f"torch:     {torch.__version__}, CPU capability {capability}, default threads {all_threads}, "
          f"oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}")
    print(f"python:    {platform.python_version()}, numpy {np.__version__}, nitrogen {nitrogen.__version__}")
    print(f"protocol:  one step at the spec's batch size; median of {args.runs} runs of N timed steps; C: "
          f"{bts.WARMUP} warm-up steps, fresh process per run, spec's semantics mode, -std=c99; torch: "
          f"{TORCH_WARMUP} warm-up steps, one process, float32, SGD lr {LR}, manual_seed(0)")
    invocation = " ".join(["python", "benchmarks/bench_vs_pytorch.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"command:   {invocation}", flush=True)

    start, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="nitrogen-vs-torch-") as tmp:
        for path in specs:
            t0 = time.perf_counter()
            rows.append(bench_one(path, steps[path.stem], args.runs, Path(tmp), all_threads))
            print(f"  {path.stem}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print_table(rows)
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
