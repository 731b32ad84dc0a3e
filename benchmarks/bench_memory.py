#!/usr/bin/env python3
"""Peak resident memory of `nitrogen train`, next to what it has to hold.

    python benchmarks/bench_memory.py                       # mlp1_mnist on mnist (needs `nitrogen fetch mnist`)
    python benchmarks/bench_memory.py --runs mlp1_mnist:mnist mlp2_fmnist:fashion-mnist --epochs 1

For every SPEC:DATASET the script runs `python -m nitrogen train SPEC --dataset DATASET --epochs E --quiet`
under `/usr/bin/time -v` in a temporary run directory and reads "Maximum resident set size". The baseline,
measured in the same run and the same way, is a Python process that imports everything `nitrogen train`
imports (NumPy, ctypes, jinja2, tqdm, and matplotlib when it is installed) and does nothing else. What training has to hold is the
data set once (uint8 images and labels as loaded, int8 once normalised) plus the model's context
(`<NAME>_CTX_BYTES`); the last column divides the peak above the baseline by that.
It only prints; nothing is asserted.
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # use this checkout's nitrogen, from any working directory

import nitrogen  # noqa: E402
from nitrogen.data import load_dataset  # noqa: E402
from nitrogen.layout import plan  # noqa: E402
from nitrogen.pipeline import analyse  # noqa: E402

from bench_train_step import cpu_model  # noqa: E402  (the same machine line as the step benchmark)

IMPORTS = ("import numpy, ctypes, jinja2, yaml, lark, tqdm\n"
           "import nitrogen.train, nitrogen.native, nitrogen.data, nitrogen.pipeline\n"
           "try:\n    import matplotlib.pyplot\nexcept ImportError:\n    pass\n")


def peak_rss_kib(command: list[str], cwd: Path) -> int:
    """Maximum resident set size of `command` (KiB), from GNU time's verbose report."""
    proc = subprocess.run(["/usr/bin/time", "-v", *command], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if match is None:
        raise SystemExit("/usr/bin/time -v printed no maximum resident set size")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=["mlp1_mnist:mnist"], metavar="SPEC:DATASET")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    python = sys.executable
    print(f"machine: {cpu_model()}, {platform.machine()}; Python {platform.python_version()}; "
          f"nitrogen {nitrogen.__version__}")
    with tempfile.TemporaryDirectory(prefix="nitrogen-mem-") as tmp:
        work = Path(tmp)
        baseline = peak_rss_kib([python, "-c", IMPORTS], work)
        print(f"baseline (a Python process with nitrogen's imports): {baseline / 1024:.1f} MiB\n")
        head = ("| spec | data set | samples | data uint8 + int8 MiB | context MiB | peak RSS MiB | above baseline MiB "
                "| above baseline / (data + context) |")
        print(head)
        print("|---|---|--:|--:|--:|--:|--:|--:|")
        for item in args.runs:
            spec_name, dataset = item.split(":")
            spec = REPO / "specs" / f"{spec_name}.yaml"
            data = load_dataset(dataset)
            samples = len(data.train_y) + len(data.test_y)
            data_bytes = 2 * (data.train_x.nbytes + data.test_x.nbytes) + data.train_y.nbytes + data.test_y.nbytes
            del data
            program, report = analyse(nitrogen.load_spec(spec))
            ctx = plan(program, report).ctx_bytes
            peak = peak_rss_kib([python, "-m", "nitrogen", "train", str(spec), "--dataset", dataset, "--epochs",
                                 str(args.epochs), "--out", str(work / f"run-{spec_name}-{dataset}"), "--quiet"],
                                REPO)
            need = (data_bytes + ctx) / 2**20
            above = (peak - baseline) / 1024
            print(f"| {spec_name} | {dataset} | {samples} | {data_bytes / 2**20:.1f} | {ctx / 2**20:.2f} | "
                  f"{peak / 1024:.1f} | {above:.1f} | {above / need:.2f} |")


if __name__ == "__main__":
    main()
