"""nitrogen: NITRO-D network specs -> integer-only C99 training code, bit-exact with a NumPy reference."""

from __future__ import annotations

from pathlib import Path

from .errors import Diagnostic, InternalError, NitrogenError, Span
from .spec import Model

__version__ = "0.1.0"
__all__ = ["__version__", "load_spec", "parse_spec_text", "Model", "NitrogenError", "InternalError",
           "Diagnostic", "Span"]

DSL_SUFFIXES = (".ng", ".nitrogen")


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


def read_spec_text(path: str | Path) -> str:
    """The spec file as text, or NitrogenError for a missing or non-UTF-8 file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise NitrogenError([Diagnostic("E001", f"no such spec file '{path}'")]) from None
    except OSError as exc:
        raise NitrogenError([Diagnostic("E001", f"cannot read '{path}': {exc.strerror}")]) from None
    for bom, encoding in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                          (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if data.startswith(bom):
            raise NitrogenError([Diagnostic("E106", f"the spec is {encoding} (it starts with a {encoding} byte-order "
                                            "mark), not UTF-8", Span(str(path), 1, 1),
                                            hint="save the spec as UTF-8")])
    try:
        return data.decode("utf-8-sig")  # a leading UTF-8 byte-order mark (Windows editors) is dropped
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = data[exc.start]
        hint = f"save the spec as UTF-8 (in Latin-1, the encoding it is probably in, 0x{byte:02x} is " \
               f"'{bytes([byte]).decode('latin-1')}')" if byte >= 0xa0 else "save the spec as UTF-8"
        raise NitrogenError([Diagnostic("E106", f"byte 0x{byte:02x} is not valid UTF-8",
                                        Span(str(path), line, col), hint=hint)]) from None


def load_spec(path: str | Path) -> Model:
    """Load and check a spec file (YAML, or the DSL for *.ng)."""
    return parse_spec_text(read_spec_text(path), str(path))
