"""Command line: `nitrogen check|compile|verify|train|evaluate|report|fetch` (docs/cli.md).

Exit codes: 0 ok, 1 diagnostics (printed to stderr), 2 usage, 3 verify mismatch, 70 internal error.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from . import DSL_SUFFIXES, __version__, load_spec
from .errors import Diagnostic, InternalError, NitrogenError, source_lines
from .ir import Program
from .spec import Model, lint, with_semantics

if TYPE_CHECKING:
    from .data import Dataset
    from .train import TrainResult

EXIT_DIAGNOSTICS, EXIT_MISMATCH, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 3, 70, 130


def _print_diagnostics(diags: Sequence[Diagnostic]) -> None:
    from . import source_text

    cache: dict[str, list[str]] = {}
    for d in diags:
        if d.span and d.span.line and d.span.file not in cache:
            # The text that was parsed; a file is never read again unless it is a regular one within the size
            # limit (a FIFO or /dev/zero would block or never end).
            text = source_text(d.span.file)
            cache[d.span.file] = source_lines(text, dsl=Path(d.span.file).suffix in DSL_SUFFIXES) if text else []
        print(d.render(cache), file=sys.stderr)
    errors = sum(1 for d in diags if d.severity == "error")
    if errors:
        print(f"{errors} error{'s' if errors != 1 else ''}", file=sys.stderr)


def _load(args: argparse.Namespace) -> Model:
    model = with_semantics(load_spec(args.spec), args.semantics)
    warnings = lint(model, tuple(getattr(args, "allow", None) or ()))
    if warnings:
        _print_diagnostics(warnings)
    return model


def cmd_check(args: argparse.Namespace) -> int:
    from .bounds import lr_amp_rows
    from .pipeline import analyse

    model = _load(args)
    program, report = analyse(model)
    _check_budget(args, model, program, report)
    print(f"{model.name}: {model.semantics} semantics, batch {model.train.batch_size}, "
          f"weights {'int32 (wrapping)' if model.semantics == 'reference' else f'{model.weight_bits}-bit saturating'}")
    print_layer_constants(program)
    print()
    head = f"{'tensor':<16} {'interval':<36} {'bits':>4}  {'C type':<9} store"
    print(head)
    print("-" * len(head))
    for b in report.bounds:
        note = "" if (b.lo, b.hi) == (b.exact_lo, b.exact_hi) else f" -> stored [{b.lo}, {b.hi}]"
        print(f"{b.name:<16} {f'[{b.exact_lo}, {b.exact_hi}]':<36} {b.bits:>4}  {b.ctype.ctype:<9} {b.store}{note}")
    for name, lo, hi in lr_amp_rows(program):
        from .bounds import bits_needed
        print(f"{name:<16} {f'[{lo}, {hi}]':<36} {bits_needed(lo, hi):>4}  {'int64_t':<9} exact (lr_inv x amp)")
    return 0


def print_layer_constants(program: Program) -> None:
    """The per-layer constants of the paper's tables: scaling factors, init bounds, amplification, learning pools."""
    head = (f"{'layer':<5} {'geometry':<30} {'H_o':>4} {'SF':>9} {'B':>3} {'amp':>6} {'adj':>4} "
            f"{'learn pool (kh,kw) pad':<23} {'D':>6} {'learn SF':>9} {'B':>3}")
    print(head)
    print("-" * len(head))
    for lc in program.layers:
        kh, kw, ph, pw = lc.pool
        pool = f"({kh},{kw}) ({ph},{pw})" if (kh, kw) != (1, 1) else "-"
        learn = f"{lc.decoder:>6} {lc.learn_sf:>9} {lc.learn_bound:>3}" if lc.decoder else f"{'-':>6} {'-':>9} {'-':>3}"
        print(f"{lc.name:<5} {lc.geometry:<30} {lc.out_size:>4} {lc.sf:>9} {lc.init_bound:>3} {lc.amp:>6} "
              f"{lc.amp_adjust:>4} {pool:<23} {learn}")


def _write_atomically(files: dict[str, str], out_dir: Path) -> None:
    """Write all files or none (nitrogen.outdir): on any error out_dir is left exactly as it was."""
    from .outdir import write_files

    write_files(files, out_dir)


def _check_budget(args: argparse.Namespace, model: Model, program: Program, report: object) -> None:
    """--ram-budget: E501 (with the largest buffers) when the context does not fit."""
    if args.ram_budget is None:
        return
    from .firmware import check_ram_budget
    from .layout import plan

    check_ram_budget(model, plan(program, report), args.ram_budget, "--ram-budget")  # type: ignore[arg-type]


def cmd_compile(args: argparse.Namespace) -> int:
    from .pipeline import compile_model

    if args.all and args.target != "host":
        print("nitrogen compile: --all writes host files only; drop --target", file=sys.stderr)
        return 2
    if args.save_checkpoint and args.target == "host":
        print("nitrogen compile: --save-checkpoint is for a firmware target (--target cortex-m0plus or cortex-m4); "
              "on a host, call <name>_checkpoint_save() or <name>_checkpoint_read()", file=sys.stderr)
        return 2
    if args.from_checkpoint and args.target == "host":
        print("nitrogen compile: --from-checkpoint is for a firmware target (--target cortex-m0plus or cortex-m4); "
              "on a host, load the checkpoint with <name>_checkpoint_load() or `nitrogen train --resume`",
              file=sys.stderr)
        return 2
    if args.all:
        # Every spec is tried: the good ones are written, each bad one gets its diagnostics, and the exit
        # code is 1 if any failed. A missing or empty directory is an error (E001), not a silent success.
        from .errors import Span

        root = Path(args.spec or "specs")
        if not root.is_dir():
            raise NitrogenError([Diagnostic("E001", "no such spec directory" if not root.exists() else
                                            "not a directory: --all compiles every spec in a directory",
                                            Span(str(root)), hint="run from the repository root (it has specs/), or "
                                            "give the directory: nitrogen compile --all DIR [-o OUT]")])
        specs = sorted([*root.glob("*.yaml"), *root.glob("*.ng")])
        if not specs:
            raise NitrogenError([Diagnostic("E001", "no specs (*.yaml, *.ng) in this directory", Span(str(root)),
                                            hint="give the directory that holds the specs: nitrogen compile --all "
                                                 "DIR [-o OUT]")])
        out_root = Path(args.output or "generated")
        failed: list[str] = []
        for spec in specs:
            args.spec = str(spec)
            try:
                compiled = compile_model(_load(args))
                _write_atomically(compiled.files, out_root / compiled.model.name)
            except NitrogenError as exc:
                _print_diagnostics(exc.diagnostics)
                failed.append(str(spec))
                continue
            print(f"{spec} -> {out_root / compiled.model.name}")
        if failed:
            print(f"compile --all: {len(failed)} of {len(specs)} specs failed: {', '.join(failed)}", file=sys.stderr)
            return EXIT_DIAGNOSTICS
        return 0
    if not args.spec or not args.output:
        print("nitrogen compile: SPEC and -o DIR are required (or --all)", file=sys.stderr)
        return 2
    compiled = compile_model(_load(args))
    _check_budget(args, compiled.model, compiled.program, compiled.report)
    files = compiled.files
    if args.target != "host":
        from .firmware import default_samples, firmware_files
        from .targets import TARGETS

        target = TARGETS[args.target]
        assert target is not None
        target = replace(target, ram_bytes=args.ram or target.ram_bytes, flash_bytes=args.flash or target.flash_bytes)
        if args.samples_from:
            from .data import load_dataset
            from .firmware import dataset_samples
            from .train import normalisation_near

            run_stats = normalisation_near(Path(args.from_checkpoint)) if args.from_checkpoint else None
            samples = dataset_samples(compiled.model, load_dataset(args.samples_from, args.data_dir),
                                      steps=args.steps, seed=args.seed, n_eval=args.eval, stats=run_stats)
        else:
            samples = default_samples(compiled.model, steps=args.steps, seed=args.seed, n_eval=args.eval)
        start = None
        if args.from_checkpoint:
            from . import checkpoint
            from .layout import checkpoint_format

            path = Path(args.from_checkpoint)
            start = checkpoint.read_bytes(path)
            # E421-E427 here, with the file's name, rather than a status code on the device.
            checkpoint.decode(checkpoint_format(compiled.program, compiled.report), start, str(path),
                              owner=checkpoint.run_spec_name(path))
        files = firmware_files(compiled, target, samples, start, args.save_checkpoint)
    out = Path(args.output)
    _write_atomically(files, out)
    for name in files:
        print(out / name)
    if args.target != "host":
        from .firmware import next_step

        assert target is not None
        print(f"next: {next_step(target, out)}")  # `make run` on the board the Makefile uses
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from . import verify

    model = _load(args)

    def show(text: str) -> None:  # progress on a terminal only: logs and pipes get the result line alone
        print(f"\r\033[K{model.name}: {text}", end="", file=sys.stderr, flush=True)

    progress = show if sys.stderr.isatty() else None
    outcome = verify.run(model, steps=args.steps, seed=args.seed, batch=args.batch, pattern=args.inputs,
                         n_eval=args.eval, progress=progress)
    if progress:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    if outcome.ok:
        shutil.rmtree(outcome.workdir, ignore_errors=True)  # kept only when there is something to debug
        print(f"bit-exact over {outcome.steps} steps")
        return 0
    print(f"mismatch: {outcome.mismatch}", file=sys.stderr)
    print(f"build and inputs kept in {outcome.workdir}", file=sys.stderr)
    return EXIT_MISMATCH


TARGET_NAMES = ("host", "cortex-m0plus", "cortex-m4")  # nitrogen.targets.TARGETS, without importing it here
DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10", "digits", "mnist5k")


def _dataset_label(arg: str) -> str:
    """The data set's name in a default run directory: the canonical name of a built-in set, else the file's
    stem (checked again, with the real error, when the data set is loaded)."""
    from .data import _canonical

    path = Path(arg)
    if path.suffix.lower() in (".npz", ".csv") or "/" in arg or "\\" in arg:
        return path.stem
    try:
        return _canonical(arg)
    except NitrogenError:
        return arg.strip().lower()


def _dataset_arg(arg: str) -> str:
    """What a run records to find its data set again: a built-in name as given, a file as an absolute path."""
    path = Path(arg)
    return str(path.resolve()) if path.is_file() else arg


def cmd_train(args: argparse.Namespace) -> int:
    from .rundir import RunDir
    from .train import train

    if args.resume:
        return _resume(args)
    if not args.spec or not args.dataset:
        print("nitrogen train: SPEC and --dataset are required (or --resume RUN to continue a run)", file=sys.stderr)
        return 2
    if args.backend is None:
        args.backend = "c"
    model = _load(args)
    seed = args.seed if args.seed is not None else model.train.seed
    default = Path("runs") / f"{model.name}-{_dataset_label(args.dataset)}-s{seed}"
    run = RunDir.new(Path(args.out) if args.out else None, default, args.overwrite)  # before any work (E430, E432)
    try:
        dataset = _load_dataset(args, args.dataset, args.data_dir)
    except BaseException:
        run.discard()
        raise
    result = train(model, dataset, run, seed=seed, epochs=args.epochs, backend=args.backend,
                   progress=not args.quiet, plateau=not args.no_plateau, early_stopping=not args.no_early_stopping,
                   semantics_override=args.semantics, dataset_arg=_dataset_arg(args.dataset),
                   data_dir=args.data_dir)
    return _report_run(model, dataset, result)


def _load_dataset(args: argparse.Namespace, name: str, data_dir: str | None) -> Dataset:
    from .data import load_dataset

    if not getattr(args, "quiet", False):
        print(f"loading {name} ...", file=sys.stderr, flush=True)
    return load_dataset(name, data_dir)


def _resume(args: argparse.Namespace) -> int:
    """`train --resume RUN`: continue a run in its own directory, with its spec, data set and options unless
    they are given again (and then they must be the run's: E433)."""
    from .rundir import RunDir
    from .spec import with_semantics
    from .train import train

    path = Path(args.resume)
    if path.is_file():  # a file of the run (last.ngck, trainer.json): its directory
        path = path.parent
    if args.out and Path(args.out).resolve() != path.resolve():
        print("nitrogen train: a resumed run continues in its own directory; drop --out", file=sys.stderr)
        return 2
    if args.overwrite:
        print("nitrogen train: --overwrite starts a new run; it cannot be combined with --resume", file=sys.stderr)
        return 2
    run = RunDir.existing(path)
    try:
        state = run.load_state()
        options = state["options"]
        spec = args.spec or next((str(path / n) for n in ("spec.yaml", "spec.ng") if (path / n).exists()), None)
        if spec is None:
            print(f"nitrogen train: {path} holds no spec copy; give SPEC", file=sys.stderr)
            return 2
        args.spec = spec
        semantics = args.semantics or options.get("semantics_override")
        args.semantics = None
        model = with_semantics(_load(args), semantics)
        seed = args.seed if args.seed is not None else options["seed"]
        dataset_arg = args.dataset or state["dataset"].get("arg") or state["dataset"]["name"]
        data_dir = args.data_dir or state["dataset"].get("data_dir")
        dataset = _load_dataset(args, dataset_arg, data_dir)
        result = train(model, dataset, run, seed=seed, epochs=args.epochs, resume=True,
                       backend=args.backend or options["backend"], progress=not args.quiet,
                       plateau=options["plateau"] if args.no_plateau is None else not args.no_plateau,
                       early_stopping=options["early_stopping"] if args.no_early_stopping is None
                       else not args.no_early_stopping,
                       semantics_override=semantics, dataset_arg=_dataset_arg(dataset_arg), data_dir=data_dir)
    finally:
        run.release()
    return _report_run(model, dataset, result)


def _report_run(model: Model, dataset: Dataset, result: TrainResult) -> int:
    if not result.records:
        print("interrupted before the first epoch finished; nothing kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    last = result.records[-1]
    how = " (early stop)" if result.stopped_early else " (interrupted)" if result.interrupted else ""
    print(f"{model.name} on {dataset.name}: best test accuracy {result.best_test_acc:.2f}% at epoch "
          f"{result.best_epoch}; final {last.test_acc:.2f}% after {last.epoch} epochs{how}")
    out = result.run_dir
    assert out is not None
    files = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if not p.name.startswith("."))
    print(f"wrote {out}/ ({', '.join(files)})")
    if result.interrupted:
        print(f"continue it with: nitrogen train --resume {out}", file=sys.stderr)
    return EXIT_INTERRUPTED if result.interrupted else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .train import evaluate, read_trained

    model = _load(args)
    trained = read_trained(model, Path(args.params))  # a bad checkpoint fails before the data set is loaded
    dataset = _load_dataset(args, args.dataset, args.data_dir)
    correct, seen = evaluate(model, dataset, trained, backend=args.backend or "c")
    print(f"{model.name} on {dataset.name}: {correct}/{seen} correct, test accuracy {100 * correct / seen:.2f}%")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from .data import fetch_dataset

    for name in args.datasets:
        print(fetch_dataset(name))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from . import cost

    model = _load(args)
    if args.input_features is not None and not args.paper:
        print("nitrogen report: --input-features applies to --paper only (the real plan uses the spec's input)",
              file=sys.stderr)
        return 2
    try:
        if args.paper:
            data = cost.paper_report(model, fp_optimizer=args.fp_optimizer, input_features=args.input_features)
        else:
            data = cost.plan_report(model, fp_optimizer=args.fp_optimizer, top=args.top)
    except cost.UsageError as exc:
        print(f"nitrogen report: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(cost.render_paper(data) if args.paper else cost.render_plan(data))
    return 0


def _int_at_least(low: int, high: int = 1 << 62) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {value}")
        return value
    return parse


class _Renamed(argparse.Action):
    """`--reference` of nitrogen 0.1, renamed so that it is not mistaken for `--semantics reference`."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        parser.error("--reference is now --backend numpy (train with the NumPy reference implementation); "
                     "for the published implementation's arithmetic use --semantics reference")


SPEC_HELP = "the network: a YAML spec (.yaml) or the same in nitrogen's DSL (.ng); see docs/spec.md"
EXAMPLES = {
    "check": "nitrogen check specs/mlp1_mnist.yaml",
    "compile": "nitrogen compile specs/tiny_mlp.yaml -o build/tiny_mlp\n"
               "  nitrogen compile specs/tiny_cnn.yaml --target cortex-m0plus -o fw/tiny_cnn",
    "verify": "nitrogen verify specs/mlp1_mnist.yaml --steps 50",
    "train": "nitrogen train specs/mlp1_mnist.yaml --dataset mnist --epochs 20\n"
             "  nitrogen train --resume runs/mlp1_mnist-mnist-s42",
    "evaluate": "nitrogen evaluate specs/mlp1_mnist.yaml --params runs/mlp1_mnist-mnist-s42 --dataset mnist",
    "report": "nitrogen report specs/vgg8b_cifar10.yaml --top 4",
    "fetch": "nitrogen fetch mnist",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nitrogen", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="nitrogen: network specs -> self-contained C99 that trains them with integers only (NITRO-D), "
                    "bit-exact with a NumPy reference.",
        epilog="first steps:\n  nitrogen fetch mnist\n  nitrogen train specs/mlp1_mnist.yaml --dataset mnist "
               "--epochs 20\n  nitrogen compile specs/tiny_cnn.yaml --target cortex-m0plus -o fw/tiny_cnn\n\n"
               "`nitrogen COMMAND --help` explains a command; docs/cli.md lists them all.")
    parser.add_argument("--version", action="version", version=f"nitrogen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                              epilog=("examples" if "\n" in EXAMPLES[name] else "example") + f":\n  {EXAMPLES[name]}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        from .spec import WARNING_CODES

        def warning_codes(text: str) -> list[str]:
            """--allow W202,W203 -> ["W202", "W203"]; only codes of warnings nitrogen gives."""
            codes = [code.strip().upper() for code in text.split(",") if code.strip()]
            if not codes or any(code not in WARNING_CODES for code in codes):
                raise argparse.ArgumentTypeError(f"'{text}' is not a list of warning codes; expected some of: "
                                                 f"{', '.join(WARNING_CODES)}")
            return codes

        p = command(name, help_text)
        p.add_argument("--semantics", choices=("nitrogen", "reference"), help="override the spec's semantics")
        p.add_argument("--allow", type=warning_codes, action="extend", default=[], metavar="W2xx[,W2xx]",
                       help="do not print these warnings (as the spec's `allow` list does); repeatable")
        return p

    p = add("check", "check a spec: print every block's constants and every tensor's proven interval and C type, "
                     "or located diagnostics")
    p.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    p.add_argument("--ram-budget", type=_int_at_least(1), metavar="BYTES",
                   help="fail (E501, listing the largest buffers) if the context needs more RAM")
    p.set_defaults(func=cmd_check)
    p = add("compile", "write the model's C (<name>.h and <name>.c) into DIR, and for a firmware target an example "
                       "firmware project")
    p.add_argument("spec", metavar="SPEC", nargs="?", help=SPEC_HELP + " (with --all: a directory of specs)")
    p.add_argument("-o", "--output", metavar="DIR", help="the output directory (nothing in it changes if anything "
                                                         "fails)")
    p.add_argument("--all", action="store_true", help="compile every spec in SPEC (default specs/) into "
                                                      "DIR/<name>/ (default generated/)")
    p.add_argument("--target", choices=tuple(TARGET_NAMES), default="host",
                   help="host: the model files; cortex-m0plus / cortex-m4: also an example firmware project "
                        "(startup, linker script, main, Makefile, CMake snippet, FIRMWARE.md)")
    p.add_argument("--steps", type=_int_at_least(1, 1 << 16), default=4,
                   help="firmware: training steps on the samples stored in flash (default 4)")
    p.add_argument("--eval", type=_int_at_least(1, 1 << 16), default=8, metavar="N",
                   help="firmware: held-out samples predicted after training (default 8)")
    p.add_argument("--seed", type=_int_at_least(0, (1 << 64) - 1), default=0,
                   help="firmware: init seed and sample seed (default 0)")
    p.add_argument("--samples-from", metavar="DATASET", help="firmware: embed real, normalised images of this data "
                   f"set ({', '.join(DATASET_NAMES)}) instead of pseudo-random inputs")
    p.add_argument("--data-dir", metavar="DIR", help="firmware: look here first for the data set's files")
    p.add_argument("--from-checkpoint", metavar="CHECKPOINT",
                   help="firmware: fine-tune on the device, starting from this checkpoint of the same network "
                        "(e.g. runs/<run>/best.ngck of `nitrogen train`; any batch size) instead of init")
    p.add_argument("--save-checkpoint", metavar="FILE",
                   help="firmware: after training, write the model's checkpoint to FILE on the debug host "
                        "(semihosting; `make run` puts it in DIR), to bring a fine-tuned model back")
    p.add_argument("--ram", type=_int_at_least(1024, 1 << 32), metavar="BYTES",
                   help="firmware: RAM of your part in link.ld (default: the QEMU board's)")
    p.add_argument("--flash", type=_int_at_least(1024, 1 << 32), metavar="BYTES",
                   help="firmware: flash of your part in link.ld (default: the QEMU board's)")
    p.add_argument("--ram-budget", type=_int_at_least(1), metavar="BYTES",
                   help="fail (E501, listing the largest buffers) if the context needs more RAM")
    p.set_defaults(func=cmd_compile)
    p = add("verify", "compile the C with a test harness, train it and the NumPy reference on the same batches, and "
                      "compare them bit for bit after every step")
    p.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    p.add_argument("--steps", type=_int_at_least(1, 1 << 20), default=20, help="training steps (default 20)")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="init and data seed (default 0)")
    p.add_argument("--batch", type=_int_at_least(1, 1 << 16), default=None, help="override the spec's batch size")
    p.add_argument("--inputs", choices=("random", "min", "max", "zero", "mixed"), default="random",
                   help="input pattern (default: pseudo-random int8)")
    p.add_argument("--eval", type=_int_at_least(0, 1 << 20), default=None, metavar="N",
                   help="held-out inputs compared after training (default: 3 x batch + 1, at most 200)")
    p.set_defaults(func=cmd_verify)
    p = add("train", "train the network on a data set with the generated C and the paper's protocol, into a run "
                     "directory (docs/training.md)")
    p.add_argument("spec", metavar="SPEC", nargs="?", help=SPEC_HELP + " (with --resume: optional, the run's own "
                                                                       "copy is used)")
    p.add_argument("--dataset", metavar="NAME|FILE",
                   help=f"a built-in data set ({', '.join(DATASET_NAMES)}) or your own FILE.npz / FILE.csv "
                        "(docs/data.md)")
    p.add_argument("--data-dir", metavar="DIR", help="look here first for the data set's files")
    p.add_argument("--epochs", type=_int_at_least(1, 1 << 20), help="maximum epochs (default: the spec's)")
    p.add_argument("--seed", type=_int_at_least(0, (1 << 64) - 1), help="run seed (default: the spec's)")
    p.add_argument("--out", metavar="DIR", help="the run directory; it must not exist or be empty (default: a new "
                                                "runs/<spec>-<dataset>-s<seed>[-vN])")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out (its files are deleted once the new run finishes an epoch)")
    p.add_argument("--resume", metavar="RUN",
                   help="continue the run in directory RUN after its last finished epoch, with its spec, data set, "
                        "seed and options, exactly as if it had never stopped (--epochs may raise the limit)")
    p.add_argument("--backend", choices=("c", "numpy"), default=None,
                   help="c: the generated C (default); numpy: the NumPy reference implementation (slow; same numbers)")
    p.add_argument("--no-plateau", action="store_true", default=None, help="keep lr_inv fixed (no x3 on a plateau)")
    p.add_argument("--no-early-stopping", action="store_true", default=None, help="always run the maximum epochs")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--reference", action=_Renamed, nargs=0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)
    p = add("evaluate", "print the test accuracy of a run or a checkpoint written by `nitrogen train`")
    p.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    p.add_argument("--params", required=True, metavar="RUN|FILE",
                   help="a run directory (its best.ngck), a .ngck checkpoint in a run directory, or a params.npz of "
                        "an earlier nitrogen")
    p.add_argument("--dataset", required=True, metavar="NAME|FILE",
                   help=f"a built-in data set ({', '.join(DATASET_NAMES)}) or FILE.npz / FILE.csv")
    p.add_argument("--data-dir", metavar="DIR", help="look here first for the data set's files")
    p.add_argument("--backend", choices=("c", "numpy"), default=None,
                   help="c: the generated C (default); numpy: the NumPy reference implementation")
    p.add_argument("--reference", action=_Renamed, nargs=0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_evaluate)
    p = add("report", "print the RAM by category, the integer operations and the energy of one training step, next "
                      "to FP32 (docs/cost-report.md)")
    p.add_argument("spec", metavar="SPEC", help=SPEC_HELP)
    p.add_argument("--json", action="store_true", help="machine-readable output (keys: docs/cost-report.md)")
    p.add_argument("--paper", action="store_true",
                   help="the paper's own accounting (head on the first block only, CIFAR input for CNNs, batch 64)")
    p.add_argument("--fp-optimizer", choices=("sgd", "adam"), default="sgd",
                   help="update rule of the FP32 baseline (default sgd, like IntegerSGD)")
    p.add_argument("--input-features", type=_int_at_least(1, (1 << 23) - 1), metavar="N",
                   help="with --paper: count an MLP with N inputs (the paper counted MLP4 with 1024)")
    p.add_argument("--top", type=_int_at_least(0, 1 << 20), default=8, metavar="N",
                   help="largest context buffers to list (default 8)")
    p.set_defaults(func=cmd_report)
    p = command("fetch", "install data sets for offline use and verify their checksums (docs/data.md)")
    p.add_argument("datasets", nargs="+", metavar="NAME", help=", ".join(DATASET_NAMES))
    p.set_defaults(func=cmd_fetch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `nitrogen` alone: what it does and how to start
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except NitrogenError as exc:
        _print_diagnostics(exc.diagnostics)
        return EXIT_DIAGNOSTICS
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (InternalError, Exception):  # noqa: BLE001 - anything else is a nitrogen bug
        print("nitrogen: internal error (please report this with the spec that caused it)", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL
