#!/usr/bin/env python3
"""Reproduce the paper's accuracy rows (docs/benchmarks.md#accuracy) with the generated C and the paper's protocol.

    python benchmarks/accuracy_table.py                      # MLP1/MNIST and MLP2/Fashion-MNIST, seeds 42-44
    python benchmarks/accuracy_table.py --seeds 42 43 44 45 46 --jobs 2
    python benchmarks/accuracy_table.py --runs vgg8b_fmnist_w8:fashion-mnist --epochs 30

Every run is `nitrogen.train.train` (the same code as `nitrogen train`): integer-only training in the
generated C, up to the spec's 150 epochs with the plateau rule and early stopping of
docs/semantics.md#training-protocol. Runs go to runs/accuracy/<spec>-<dataset>-s<seed>/ and are reused when
their metrics.json exists (delete the directory to re-run). The table gives, per row, the mean and 2x the
population standard deviation (the paper's "±") of the best-epoch test accuracy (the paper's metric) and of the
final-epoch accuracy, the epochs run and the wall time, next to the paper's number.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PAPER = {"mlp1_mnist": ("MNIST", "97.36 ± 0.23"), "mlp2_fmnist": ("Fashion-MNIST", "88.66 ± 0.46"),
         "vgg8b_fmnist_w8": ("Fashion-MNIST", "93.66 ± 0.40 (full-width VGG8B)"),
         "vgg8b_fmnist": ("Fashion-MNIST", "93.66 ± 0.40"), "vgg8b_mnist": ("MNIST", "99.45 ± 0.05")}
DEFAULT_RUNS = ("mlp1_mnist:mnist", "mlp2_fmnist:fashion-mnist")


def one_run(spec: str, dataset: str, seed: int, epochs: int | None, out_root: str) -> dict[str, object]:
    """Train one seed (in a worker process) and return its metrics.json content."""
    import nitrogen
    from nitrogen.data import load_dataset
    from nitrogen.train import train

    out = Path(out_root) / (f"{spec}-{dataset}-s{seed}" + ("" if epochs is None else f"-e{epochs}"))
    metrics = out / "metrics.json"
    if not metrics.exists():
        model = nitrogen.load_spec(REPO / "specs" / f"{spec}.yaml")
        start = time.monotonic()
        train(model, load_dataset(dataset), out, seed=seed, epochs=epochs, progress=False)
        print(f"  {spec} s{seed}: done in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    result: dict[str, object] = json.loads(metrics.read_text())
    return result


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    two_sigma = 2 * statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {two_sigma:.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", default=list(DEFAULT_RUNS), metavar="SPEC:DATASET")
    ap.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    ap.add_argument("--epochs", type=int, default=None, help="cap the epochs (default: the spec's 150 + rules)")
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (one core each)")
    ap.add_argument("--out", default=str(REPO / "runs" / "accuracy"))
    args = ap.parse_args()
    pairs = [tuple(r.split(":", 1)) for r in args.runs]
    jobs = [(spec, ds, seed) for spec, ds in pairs for seed in args.seeds]
    print(f"{len(jobs)} runs, {args.jobs} at a time; results in {args.out}", file=sys.stderr)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {job: pool.submit(one_run, *job, args.epochs, args.out) for job in jobs}
        results = {job: f.result() for job, f in futures.items()}
    print("| model | data set | seeds | best-epoch test acc. (%) | final-epoch test acc. (%) | epochs run | "
          "wall time per run | paper (NITRO-D) |")
    print("|---|---|---|--:|--:|--:|--:|---|")
    for spec, ds in pairs:
        rows = [results[(spec, ds, s)] for s in args.seeds]
        best = [float(r["best_test_acc"]) for r in rows]  # type: ignore[arg-type]
        final = [float(r["final_test_acc"]) for r in rows]  # type: ignore[arg-type]
        epochs = [int(r["epochs_run"]) for r in rows]  # type: ignore[call-overload]
        seconds = [float(r["seconds"]) for r in rows]  # type: ignore[arg-type]
        paper = PAPER.get(spec, ("", "-"))[1]
        print(f"| {spec} | {ds} | {', '.join(map(str, args.seeds))} | {spread(best)} | {spread(final)} | "
              f"{min(epochs)}-{max(epochs)} | {statistics.fmean(seconds) / 60:.1f} min | {paper} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
