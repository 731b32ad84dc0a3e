"""nitrogen: NITRO-D network specs -> integer-only C99 training code, bit-exact with a NumPy reference."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import Diagnostic, InternalError, NitrogenError, Span, closest
from .spec import Model
from .tree import DSL_SUFFIXES

__version__ = "0.1.0"
__all__ = ["__version__", "load_spec", "parse_spec_text", "Model", "NitrogenError", "InternalError",
           "Diagnostic", "Span"]


def parse_spec_text(text: str, file: str) -> Model:
    """Parse spec text (YAML, or the DSL when `file` ends in .ng) into a checked `Model`."""
    from .spec import build_model

    if Path(file).suffix in DSL_SUFFIXES:
        from .dsl import parse_dsl
        tree = parse_dsl(text, file)
    else:
        from .yaml_front import parse_yaml
        tree = parse_yaml(text, file)
    return build_model(tree, file)


# E109: a real spec is a few kilobytes. Reading stops one byte past this limit, so /dev/zero, a data file
# passed by mistake or a FIFO that never ends costs at most 1 MiB of memory and no time.
MAX_SPEC_BYTES = 1 << 20

# The text of the specs read by this process (the latest few), so that diagnostics show exactly the lines
# that were parsed, without reading the file a second time (a FIFO can be read only once).
_SOURCES: dict[str, str] = {}
_SOURCES_KEPT = 64

_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISSOCK, "a socket"))


def _unreadable(path: str | Path, message: str, hint: str | None = None) -> NitrogenError:
    return NitrogenError([Diagnostic("E001", message, Span(str(path)), hint=hint)])


def _missing_hint(path: Path) -> str | None:
    """'did you mean ...' with the closest spec file next to a missing one."""
    try:
        names = [q.name for q in path.parent.iterdir() if q.suffix in (".yaml", *DSL_SUFFIXES)] \
            if path.parent.is_dir() else []
    except OSError:
        return None
    close = closest(path.name, names)
    return f"did you mean '{path.parent / close}'?" if close else None


def read_spec_bytes(path: str | Path) -> bytes:
    """The bytes of a spec file, at most MAX_SPEC_BYTES of them, or NitrogenError: E001 for a missing,
    unreadable or non-file path, E109 for a larger file. Devices and FIFOs are read like files but never
    block on open (a FIFO nobody writes to gives no data), so no path can hang the command."""
    p = Path(path)
    try:  # O_NONBLOCK: opening a FIFO without a writer would wait forever; it changes nothing for files
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _unreadable(path, "no such spec file", _missing_hint(p)) from None
    except NotADirectoryError:
        raise _unreadable(path, "no such spec file (a part of the path is a file, not a directory)") from None
    except IsADirectoryError:  # Windows; POSIX opens a directory and fails on fstat below
        raise _unreadable(path, "this is a directory, not a spec file", _directory_hint(p)) from None
    except OSError as exc:
        raise _unreadable(path, f"cannot read the spec file: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise _unreadable(path, "this is a directory, not a spec file", _directory_hint(p))
        kind = next((name for test, name in _KINDS if test(mode)), None)
        if kind is not None:
            if os.isatty(fd):
                raise _unreadable(path, "this is a terminal, not a spec file", "give the spec file's path")
            os.set_blocking(fd, True)  # a pipe with a writer: wait for its data
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_SPEC_BYTES:
            chunk = os.read(fd, min(1 << 16, MAX_SPEC_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise _unreadable(path, f"cannot read the spec file: {exc.strerror}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_SPEC_BYTES:
        size_note = f"the file has {os.stat(p).st_size} bytes" if kind is None else f"{kind} that gives more bytes"
        raise NitrogenError([Diagnostic(
            "E109", f"the spec is larger than {MAX_SPEC_BYTES} bytes (1 MiB), nitrogen's limit for a spec file",
            Span(str(path), 1, 1), (f"{size_note}; reading stopped after {MAX_SPEC_BYTES + 1}",),
            hint="a spec is a few kilobytes of YAML or DSL: is this the right file?")])
    if not data and kind is not None:
        raise _unreadable(path, f"nothing to read: this is {kind}, not a spec file",
                          "a FIFO gives data only while a program writes into it" if kind == "a FIFO" else
                          "give the path of a .yaml or .ng spec file")
    return data


def _directory_hint(path: Path) -> str:
    try:
        specs = sorted(q for q in path.iterdir() if q.suffix in (".yaml", *DSL_SUFFIXES) and q.is_file())
    except OSError:
        specs = []
    example = f", such as '{specs[0]}'" if specs else ""
    return f"give one .yaml or .ng spec file{example}; `nitrogen compile --all {path}` compiles every spec in a " \
           "directory"


def read_spec_text(path: str | Path) -> str:
    """The spec file as text, or NitrogenError for a missing, too large or non-UTF-8 file."""
    data = read_spec_bytes(path)
    for bom, encoding in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                          (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if data.startswith(bom):
            raise NitrogenError([Diagnostic("E106", f"the spec is {encoding} (it starts with a {encoding} byte-order "
                                            "mark), not UTF-8", Span(str(path), 1, 1),
                                            hint="save the spec as UTF-8")])
    try:
        text = data.decode("utf-8-sig")  # a leading UTF-8 byte-order mark (Windows editors) is dropped
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = data[exc.start]
        hint = f"save the spec as UTF-8 (in Latin-1, the encoding it is probably in, 0x{byte:02x} is " \
               f"'{bytes([byte]).decode('latin-1')}')" if byte >= 0xa0 else "save the spec as UTF-8"
        raise NitrogenError([Diagnostic("E106", f"byte 0x{byte:02x} is not valid UTF-8",
                                        Span(str(path), line, col), hint=hint)]) from None
    _SOURCES.pop(str(path), None)
    _SOURCES[str(path)] = text
    while len(_SOURCES) > _SOURCES_KEPT:
        del _SOURCES[next(iter(_SOURCES))]
    return text


def source_text(path: str) -> str | None:
    """The text of a spec for the source lines under its diagnostics: as it was parsed when this process
    read it, else read again if it is a regular UTF-8 file within the size limit, else None."""
    if path in _SOURCES:
        return _SOURCES[path]
    try:
        if not Path(path).is_file() or Path(path).stat().st_size > MAX_SPEC_BYTES:
            return None
        return Path(path).read_bytes()[:MAX_SPEC_BYTES].decode("utf-8-sig", errors="replace")
    except OSError:
        return None


def load_spec(path: str | Path) -> Model:
    """Load and check a spec file (YAML, or the DSL for *.ng)."""
    return parse_spec_text(read_spec_text(path), str(path))
