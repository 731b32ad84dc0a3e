"""Example firmware for bare-metal targets, and the tools that build, run and inspect it.

`nitrogen compile SPEC --target cortex-m0plus -o DIR` writes the model files plus a firmware project
(templates/firmware/) that trains a few steps on samples in flash and prints checksums through
semihosting. This module decides every number of that project (samples, steps, memory map), checks the
RAM plan against the target, and drives the GNU Arm toolchain and QEMU for the tests and the CLI.

Fine-tuning on the device: with `start` (the bytes of a checkpoint of the same network, e.g. the
`checkpoint.ngck` of a `nitrogen train` run on a PC), the checkpoint is stored in flash and `main.c`
starts from it with `<name>_checkpoint_load()` instead of `<name>_init()`: parameters, learning rate, PRNG
and step counter continue where the PC stopped. The spec hash ignores the batch size, so a run at batch
64 fine-tunes on a device build of the same network at batch 1. With `save` (a file name), the firmware
writes its checkpoint after training to that file on the debug host through semihosting (QEMU: next to the
ELF), streamed with `<name>_checkpoint_read()`, so the fine-tuned model comes back to the PC.

The expected output is computed by the NumPy reference (`expected_output`), never by the C.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import checkpoint, reference
from .cost import largest_buffers, ram
from .emit import emit_firmware
from .errors import Diagnostic, NitrogenError
from .layout import Layout, checkpoint_format, plan
from .pipeline import Compiled
from .data import Dataset, fit_to_model
from .spec import Model
from .targets import FLOAT_SYMBOL_RE, Board, Target, board_reason, qemu_board
from .preprocess import Stats, normalize
from .train import prepare
from .verify import make_batches


@dataclass(frozen=True)
class Samples:
    """What the example firmware trains on and predicts, as it is stored in flash."""

    seed: int                 # <name>_init() seed
    train_x: np.ndarray       # (steps, batch, input_len) int8
    train_labels: np.ndarray  # (steps, batch) uint8
    eval_x: np.ndarray        # (n_eval, input_len) int8
    doc: str


def default_samples(model: Model, steps: int = 4, seed: int = 0, n_eval: int = 8) -> Samples:
    """Deterministic pseudo-random int8 batches (the inputs `nitrogen verify` uses, PCG32 stream 7)."""
    xs, ys = make_batches(model, steps, seed + 1, "random")
    ex, _ = make_batches(replace(model, train=replace(model.train, batch_size=n_eval)), 1, seed + 2, "random")
    length = model.input_len
    return Samples(seed, xs.reshape(steps, model.train.batch_size, length), ys,
                   ex.reshape(n_eval, length), f"pseudo-random int8 inputs, verification seed {seed}")


def dataset_samples(model: Model, dataset: Dataset, steps: int = 4, seed: int = 0, n_eval: int = 8,
                    stats: Stats | None = None) -> Samples:
    """Real images, normalised exactly as `nitrogen train` does (training-set statistics,
    docs/semantics.md#preprocessing):
    the first steps * batch training images in stored order, and the first n_eval test images. `stats`: the
    normalisation of an earlier run (a firmware that fine-tunes its checkpoint must see data as it did)."""
    dataset = fit_to_model(dataset, model)
    bs = model.train.batch_size
    if steps * bs > len(dataset.train_x) or n_eval > len(dataset.test_x):
        raise NitrogenError([Diagnostic("E411", f"{dataset.name} has {len(dataset.train_x)} training and "
                                        f"{len(dataset.test_x)} test images; the firmware asks for {steps * bs} "
                                        f"and {n_eval}", hint="lower --steps or --eval")])
    own, train_x, test_x = prepare(dataset, model, seed)
    if stats is not None and stats != own:
        train_x, test_x = normalize(dataset.train_x, stats), normalize(dataset.test_x, stats)
    how = ("the training-set statistics (docs/semantics.md#preprocessing)" if stats is None
           else "the statistics of the checkpoint's run")
    length = model.input_len
    return Samples(seed, train_x[:steps * bs].reshape(steps, bs, length),
                   dataset.train_y[:steps * bs].reshape(steps, bs).astype(np.uint8),
                   test_x[:n_eval].reshape(n_eval, length),
                   f"the first {steps * bs} training and {n_eval} test images of {dataset.name}, normalised with "
                   f"{how}")


def ram_rows(layout: Layout) -> list[tuple[str, int]]:
    """The context by category (cost.ram), for FIRMWARE.md; the rows add up to ctx_bytes."""
    r = ram(layout)
    rows = [("parameters", r.params), ("tensors handed between layers and saved for the backward pass", r.saved),
            ("per-block scratch", r.scratch), ("PRNG, learning rate and counters", r.state)]
    return rows + ([("alignment padding", r.padding)] if r.padding else [])


def check_ram_budget(model: Model, layout: Layout, budget: int, what: str) -> None:
    """E501 when the context does not fit `budget` bytes; the notes name the largest buffers."""
    if layout.ctx_bytes <= budget:
        return
    notes = [f"largest buffer: {b.path} {b.ctype}[{b.count}], {b.bytes} bytes" for b in largest_buffers(layout, 5)]
    raise NitrogenError([Diagnostic(
        "E501", f"the model needs {layout.ctx_bytes} bytes of RAM, over the {what} of {budget} bytes "
        f"by {layout.ctx_bytes - budget}", model.span(""), tuple(notes),
        hint="reduce train.batch_size or the layer widths; `nitrogen report` shows the whole plan")])


def start_checkpoint(compiled: Compiled, data: bytes, source: str) -> checkpoint.Checkpoint:
    """Validate the checkpoint a firmware starts from against the compiled network (E421-E427, as the C's
    `<name>_checkpoint_load()` would reject it on the device)."""
    fmt = checkpoint_format(compiled.program, compiled.report)
    return checkpoint.decode(fmt, data, source)


SAVE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # a plain file name: no path, no C escapes


def firmware_files(compiled: Compiled, target: Target, samples: Samples, start: bytes | None = None,
                   save: str | None = None) -> dict[str, str]:
    """The model files plus the example firmware for `target`; `start`: a checkpoint to fine-tune from;
    `save`: the file the firmware writes its trained checkpoint to."""
    if save is not None and not SAVE_NAME_RE.fullmatch(save):
        raise NitrogenError([Diagnostic("E431", f"'{save}' is not a plain file name for the saved checkpoint",
                                        hint="letters, digits, '_', '.' and '-', at most 64, e.g. fine_tuned.ngck")])
    program, model = compiled.program, compiled.model
    layout = plan(program, compiled.report)
    check_ram_budget(model, layout, target.ram_budget, f"RAM of {target.name} ({target.ram_bytes} bytes) minus "
                     f"its {target.stack_bytes}-byte stack reserve")
    steps, batch = samples.train_labels.shape
    view = {
        "target": target, "board": qemu_board(target), "board_reason": board_reason(target),
        "steps": steps, "batch": batch, "n_eval": len(samples.eval_x), "seed": samples.seed,
        "train_x": [tuple(int(v) for v in b.reshape(-1)) for b in samples.train_x],
        "train_labels": [[int(v) for v in b] for b in samples.train_labels],
        "eval_x": tuple(int(v) for v in samples.eval_x.reshape(-1)), "samples_doc": samples.doc,
        "ctx_bytes": layout.ctx_bytes, "ram_rows": ram_rows(layout), "float_regex": FLOAT_SYMBOL_RE,
        "start": tuple(start) if start is not None else None, "save": save,
        "start_doc": _start_doc(start_checkpoint(compiled, start, "checkpoint")) if start is not None else "",
    }
    return {**compiled.files, **emit_firmware(program, view)}


def saved_checkpoint(compiled: Compiled, ref: reference.Model, epoch: int) -> bytes:
    """The checkpoint the firmware writes after training, from the reference's state (Python's writer)."""
    state = checkpoint.State(ref.rng.state, ref.rng.inc, ref.lr_inv, ref.steps, epoch)
    return checkpoint.encode(checkpoint_format(compiled.program, compiled.report), ref.params, state)


def _start_doc(ck: checkpoint.Checkpoint) -> str:
    return f"a checkpoint after {ck.state.steps} steps (epoch {ck.state.epoch}, lr_inv {ck.state.lr_inv})"


def expected_output(compiled: Compiled, target: Target, samples: Samples, start: bytes | None = None,
                    save: str | None = None) -> str:
    """The exact text main.c prints, computed by the NumPy reference from the same samples (and from the
    same checkpoint, decoded in Python, when the firmware starts from one)."""
    model = compiled.model
    steps, batch = samples.train_labels.shape
    ctx_bytes = plan(compiled.program, compiled.report).ctx_bytes
    lines = [f"nitrogen firmware: {model.name}, {target.name}, {steps} steps of batch {batch}, "
             f"context {ctx_bytes} bytes"]
    ref = reference.Model(model, seed=samples.seed)
    epoch = 0
    if start is not None:
        ck = start_checkpoint(compiled, start, "checkpoint")
        checkpoint.restore(ref, ck)
        epoch = ck.state.epoch
        lines.append(f"start: {_start_doc(ck)}")
    shape = (batch,) + model.input_shape
    for step in range(steps):
        stats = ref.train_step(samples.train_x[step].reshape(shape), samples.train_labels[step])
        lines.append(f"step {step + 1} status 0 loss {stats.loss} correct {stats.correct}")
    flat = np.concatenate([v.reshape(-1) for v in ref.params.values()]).astype("<i4")
    lines.append(f"params_crc32 0x{zlib.crc32(flat.tobytes()):08x}")
    if save is not None:
        saved = saved_checkpoint(compiled, ref, epoch)
        lines.append(f"saved {save}: {len(saved)} bytes, crc32 0x{zlib.crc32(saved):08x}")
    logits = ref.predict(samples.eval_x.reshape((len(samples.eval_x),) + model.input_shape)).astype(np.int8)
    lines.append(f"logits_crc32 0x{zlib.crc32(logits.tobytes()):08x}")
    lines.append("predictions" + "".join(f" {int(np.argmax(row))}" for row in logits))
    lines.append("done")
    return "\n".join(lines) + "\n"


# ---- tools ---------------------------------------------------------------------------------------------

INSTALL = {"arm-none-eabi-gcc": "apt-get install gcc-arm-none-eabi", "arm-none-eabi-nm": "apt-get install "
           "gcc-arm-none-eabi", "arm-none-eabi-size": "apt-get install gcc-arm-none-eabi",
           "qemu-system-arm": "apt-get install qemu-system-arm", "make": "apt-get install make"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise NitrogenError([Diagnostic("E904", f"'{name}' not found on PATH",
                                        hint=INSTALL.get(name, f"install {name}"))])
    return path


def build(directory: Path, target: str = "all") -> Path:
    """`make` in a generated firmware directory; returns the ELF (or the host program for 'host_<name>')."""
    proc = subprocess.run([tool("make"), "-s", "-C", str(directory), target], capture_output=True, text=True)
    if proc.returncode != 0:
        raise NitrogenError([Diagnostic("E905", f"building the firmware in {directory} failed",
                                        details=((proc.stdout + proc.stderr).strip(),))])
    elves = sorted(directory.glob("*.elf"))
    if target == "all":
        if not elves:
            raise NitrogenError([Diagnostic("E905", f"make produced no ELF in {directory}")])
        return elves[0]
    return directory / target


def next_step(target: Target, directory: Path) -> str:
    """The command `nitrogen compile` suggests after writing a firmware project: `make run`, which runs on
    the board qemu_board() chose (the Makefile's default), or only `make` when no QEMU board holds the
    memory map."""
    where = shlex.quote(str(directory))
    see = f"see {directory / 'FIRMWARE.md'}"
    board, reason = qemu_board(target), board_reason(target)
    if board is None:
        return f"make -C {where}    (builds the image; no QEMU board runs it: {reason}; {see})"
    return f"make -C {where} run    (QEMU board {board.machine}{': ' + reason if reason else ''}; {see})"


def _board(target: Target) -> Board:
    board = qemu_board(target)
    if board is None:
        raise NitrogenError([Diagnostic("E907", f"no QEMU board runs this {target.name} image",
                                        notes=(board_reason(target),),
                                        hint="lower --ram/--flash to a size a board emulates")])
    return board


def run_qemu(elf: Path, target: Target, timeout: float = 300.0) -> tuple[int, str]:
    """Run a firmware image under qemu-system-arm, on the board its Makefile uses (qemu_board), with
    semihosting on stdout; (exit status, stdout)."""
    machine = _board(target).machine
    command = [tool("qemu-system-arm"), "-M", machine, "-display", "none", "-monitor", "none",
               "-serial", "none", "-chardev", "stdio,id=sh0",
               "-semihosting-config", "enable=on,target=native,chardev=sh0", "-kernel", str(elf)]
    try:
        # In the ELF's directory: files the firmware writes through semihosting (a checkpoint) land there.
        proc = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                              cwd=elf.parent)
    except subprocess.TimeoutExpired:
        raise NitrogenError([Diagnostic("E906", f"{elf.name} did not finish within {timeout:.0f} s under QEMU "
                                        f"({machine})")]) from None
    return proc.returncode, proc.stdout


def float_symbols(binary: Path) -> list[str]:
    """Soft-float and libm symbols that an ELF or object file defines or references (empty: none)."""
    proc = subprocess.run([tool("arm-none-eabi-nm"), str(binary)], capture_output=True, text=True, check=True)
    pattern = re.compile(FLOAT_SYMBOL_RE)
    names = {line.split()[-1] for line in proc.stdout.splitlines() if line.strip()}
    return sorted(name for name in names if pattern.search(name))


def section_sizes(binary: Path) -> dict[str, int]:
    """text, data and bss bytes as arm-none-eabi-size (Berkeley format) prints them."""
    proc = subprocess.run([tool("arm-none-eabi-size"), str(binary)], capture_output=True, text=True, check=True)
    fields = proc.stdout.splitlines()[1].split()
    return {"text": int(fields[0]), "data": int(fields[1]), "bss": int(fields[2])}


__all__ = ["Samples", "default_samples", "dataset_samples", "firmware_files", "expected_output", "check_ram_budget",
           "ram_rows", "next_step", "build", "run_qemu", "float_symbols", "section_sizes", "tool"]
