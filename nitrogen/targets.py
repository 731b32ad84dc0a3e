"""Compilation targets: the host (the model files only) and bare-metal Cortex-M targets, and the boards of
qemu-system-arm that run their example firmware.

A target fixes the CPU flags of the example firmware, its memory map (link.ld) and the QEMU boards that
can run it. Its default memory map is that of its first board; `nitrogen compile --ram/--flash` change the
sizes for a real part, and `qemu_board()` then picks the first board that still holds the map. Every number
lives here so that templates only arrange them.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class Board:
    """A Cortex-M machine of qemu-system-arm (7.2): the instruction set it holds an image to, and the
    memory it emulates (an access outside it faults; the initial stack pointer is the top of RAM)."""

    machine: str        # qemu-system-arm -M
    doc: str            # the board and its CPU
    enforces: str       # what running an image there checks: "It checks <enforces>."
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int


# The one table of boards: every consumer (Makefile, FIRMWARE.md, `nitrogen compile`, the tests' QEMU
# runner) reads it through qemu_board().
BOARDS: tuple[Board, ...] = (
    Board("microbit", "BBC micro:bit (nRF51822), Cortex-M0: no FPU, no divider",
          "the ARMv6-M instruction set of the Cortex-M0/M0+: any other instruction faults",
          0x00000000, 256 * KIB, 0x20000000, 16 * KIB),
    Board("mps2-an385", "Arm MPS2+ AN385, Cortex-M3",
          "ARMv7-M, so it runs ARMv6-M code but does not enforce the ARMv6-M subset",
          0x00000000, 4 * MIB, 0x20000000, 4 * MIB),
    Board("mps2-an386", "Arm MPS2+ AN386, Cortex-M4",
          "the ARMv7E-M instruction set of the Cortex-M4 (the soft-float image leaves its FPU unused)",
          0x00000000, 4 * MIB, 0x20000000, 4 * MIB),
)
BOARD: dict[str, Board] = {board.machine: board for board in BOARDS}


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    cpu_flags: tuple[str, ...]   # arm-none-eabi-gcc flags of the firmware build
    boards: tuple[str, ...]      # machines of BOARDS that run this code, preferred (strictest) first
    flash_origin: int            # the memory map of link.ld
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    stack_bytes: int             # reserved below the top of RAM; the link fails if .data + .bss leave less

    @property
    def ram_budget(self) -> int:
        """Bytes the model context may take when it is the firmware's only large object."""
        return self.ram_bytes - self.stack_bytes


def _target(name: str, cpu_flags: tuple[str, ...], boards: tuple[str, ...], stack_bytes: int) -> Target:
    """A target whose default memory map is its first board's."""
    first = BOARD[boards[0]]
    return Target(name, cpu_flags, boards, first.flash_origin, first.flash_bytes, first.ram_origin, first.ram_bytes,
                  stack_bytes)


CORTEX_M0PLUS = _target("cortex-m0plus", ("-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"),
                        ("microbit", "mps2-an385"), 2048)
CORTEX_M4 = _target("cortex-m4", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"), ("mps2-an386",), 8192)

TARGETS: dict[str, Target | None] = {"host": None, CORTEX_M0PLUS.name: CORTEX_M0PLUS, CORTEX_M4.name: CORTEX_M4}


def _misfits(board: Board, target: Target) -> list[str]:
    """The regions of the target's memory map that the board does not emulate (empty: it holds them all)."""
    regions = (("flash", target.flash_origin, target.flash_bytes, board.flash_origin, board.flash_bytes),
               ("RAM", target.ram_origin, target.ram_bytes, board.ram_origin, board.ram_bytes))
    return [f"{size} bytes of {what} at 0x{origin:08X} do not fit {board.machine}'s {b_size} at 0x{b_origin:08X}"
            for what, origin, size, b_origin, b_size in regions
            if not b_origin <= origin or origin + size > b_origin + b_size]


def qemu_board(target: Target) -> Board | None:
    """The board that runs the target's firmware: the first of `target.boards` whose flash and RAM hold the
    memory map of link.ld; None when no emulated board is large enough. The only place a board is chosen."""
    return next((BOARD[m] for m in target.boards if not _misfits(BOARD[m], target)), None)


def board_reason(target: Target) -> str:
    """Why qemu_board() did not choose the target's first board ('' when it did): the regions of the memory
    map that the first board (or, when there is no board, each board) does not hold."""
    board, first = qemu_board(target), BOARD[target.boards[0]]
    if board is first:
        return ""
    if board is None:
        return "; ".join(misfit for m in target.boards for misfit in _misfits(BOARD[m], target))
    return " and ".join(_misfits(first, target))


# Soft-float and libm symbols, as arm-none-eabi-nm names them: the single- and double-precision __aeabi_*
# routines and conversions, libgcc's generic soft-float arithmetic, comparisons and conversions, the half-float
# and fixed-point conversions, and the common libm names. Checked against the global symbols of ARMv6-M
# libgcc.a (tests/test_firmware.py uses it on linked images and on a float-using control object); integer
# helpers such as __aeabi_idiv, __aeabi_ldivmod or __aeabi_lmul do not match.
FLOAT_SYMBOL_RE = (r"__aeabi_(f|d|cf|cd|[iu]?l?2[fd]|ui2[fd]|ul2[fd])[a-z0-9]*|__(add|sub|mul|div|neg)[sdtx]f3|"
                   r"__float(un)?[sdt]i[sdtx]f|__fix(uns)?[sdtx]f[sdt]i|__extend[sdhx]f[sdtx]f2|__trunc[sdtx]f[sdh]f2|"
                   r"__(eq|ne|lt|le|gt|ge|unord|cmp)[sdtx]f2|__powi[sdtx]f2|__(mul|div)[sdtx]c3|__gnu_[fdh]2[fdh]_|"
                   r"__gnu_(sat)?fract[a-z]*[sd]f|^(sqrt|exp|log|pow|floor|ceil|round|fabs|tanh|sin|cos)f?$")

__all__ = ["Board", "BOARDS", "BOARD", "Target", "TARGETS", "CORTEX_M0PLUS", "CORTEX_M4", "FLOAT_SYMBOL_RE",
           "qemu_board", "board_reason"]
