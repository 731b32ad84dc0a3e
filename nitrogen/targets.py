"""Compilation targets: the host (the model files only) and bare-metal Cortex-M boards that QEMU emulates.

A target fixes the CPU flags of the example firmware, its memory map and the QEMU machine that runs
it. The memory maps are those of the emulated boards; for a real part, edit `link.ld` (FIRMWARE.md
says how). Every number lives here so that templates only arrange them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    cpu_flags: tuple[str, ...]   # arm-none-eabi-gcc flags of the firmware build
    qemu_machine: str            # qemu-system-arm -M
    board_doc: str
    flash_origin: int
    flash_bytes: int
    ram_origin: int
    ram_bytes: int
    stack_bytes: int             # reserved below the top of RAM; the link fails if .data + .bss leave less

    @property
    def ram_budget(self) -> int:
        """Bytes the model context may take when it is the firmware's only large object."""
        return self.ram_bytes - self.stack_bytes


CORTEX_M0PLUS = Target(
    "cortex-m0plus", ("-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"), "microbit",
    "BBC micro:bit, nRF51822: Cortex-M0, ARMv6-M, 256 KiB flash, 16 KiB RAM, no FPU, no divider",
    0x00000000, 256 * 1024, 0x20000000, 16 * 1024, 2048)
CORTEX_M4 = Target(
    "cortex-m4", ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"), "mps2-an386",
    "Arm MPS2+ AN386: Cortex-M4, 4 MiB code SSRAM, 4 MiB data SSRAM",
    0x00000000, 4 * 1024 * 1024, 0x20000000, 4 * 1024 * 1024, 8192)

TARGETS: dict[str, Target | None] = {"host": None, CORTEX_M0PLUS.name: CORTEX_M0PLUS, CORTEX_M4.name: CORTEX_M4}

# Soft-float and libm symbols (../shared/toolchain.md, validated against every global of ARMv6-M libgcc.a):
# integer helpers such as __aeabi_idiv, __aeabi_ldivmod or __aeabi_lmul do not match.
FLOAT_SYMBOL_RE = (r"__aeabi_(f|d|cf|cd|[iu]?l?2[fd]|ui2[fd]|ul2[fd])[a-z0-9]*|__(add|sub|mul|div|neg)[sdtx]f3|"
                   r"__float(un)?[sdt]i[sdtx]f|__fix(uns)?[sdtx]f[sdt]i|__extend[sdhx]f[sdtx]f2|__trunc[sdtx]f[sdh]f2|"
                   r"__(eq|ne|lt|le|gt|ge|unord|cmp)[sdtx]f2|__powi[sdtx]f2|__(mul|div)[sdtx]c3|__gnu_[fdh]2[fdh]_|"
                   r"__gnu_(sat)?fract[a-z]*[sd]f|^(sqrt|exp|log|pow|floor|ceil|round|fabs|tanh|sin|cos)f?$")

__all__ = ["Target", "TARGETS", "CORTEX_M0PLUS", "CORTEX_M4", "FLOAT_SYMBOL_RE"]
