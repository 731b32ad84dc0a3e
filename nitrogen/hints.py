"""Hints for the mistakes a first-time user makes: habits from float frameworks (a learning rate of 0.002,
a dropout of 0.1, `kind: dense`, `stride: 2`, `padding: same`), keys written in the wrong section, and
YAML's `key:value` without a space.

Pure functions of the key and the written text, shared by both front ends and `spec.py`, so the YAML and
DSL forms of one mistake get the same hint. This module imports nothing from nitrogen.
"""

from __future__ import annotations

import math
import re

# A key and its value with no space after the colon: YAML reads `lr_inv:64` as one plain word.
NO_SPACE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):([^\s:][^\s]*)")

# Layer kinds of other frameworks, and what nitrogen does instead.
_RELU = "NITRO-ReLU is part of every linear and conv block: delete this layer (a block's slope_inv sets its slope)"
_OUTPUT = "the output layer (to num_classes) is implied after the last layer: delete this layer"
KIND_HINTS: dict[str, str] = {
    "relu": _RELU, "nitro_relu": _RELU, "leaky_relu": _RELU, "activation": _RELU,
    "flatten": "a flatten is implied before the first linear block: delete this layer",
    "output": _OUTPUT, "softmax": _OUTPUT, "classifier": _OUTPUT,
    "dense": "a dense (fully connected) layer is a linear block in nitrogen: use the kind linear",
    "fc": "a fully connected layer is a linear block in nitrogen: use the kind linear",
    "fully_connected": "a fully connected layer is a linear block in nitrogen: use the kind linear",
    "batchnorm": "NITRO-D has no batch normalisation (each block's NITRO-Scaling keeps values in range): delete "
                 "this layer",
    "batch_norm": "NITRO-D has no batch normalisation (each block's NITRO-Scaling keeps values in range): delete "
                  "this layer",
}

# Keys of other frameworks, by the kind of section they were written in ("train", "layer", "conv", ...).
_INFERRED = "the input size of a layer is inferred from the layer before it: delete '{key}'"
_KEY_HINTS: dict[tuple[str, str], str] = {
    ("layer", "in_features"): _INFERRED, ("layer", "in_channels"): _INFERRED,
    ("layer", "input_size"): _INFERRED, ("layer", "in"): _INFERRED,
    ("layer", "activation"): _RELU.replace("this layer", "'activation'"),
    ("conv", "stride"): "conv blocks always have stride 1: delete 'stride', and downsample with a maxpool or "
                        "avgpool layer after the block (kernel 2 halves the size)",
    ("pool", "stride"): "a pool's stride is its kernel: delete 'stride'",
    ("layer", "stride"): "only conv blocks and pools have a stride, and it is not a key: delete 'stride'",
    ("layer", "units"): "the width of a linear block is out_features",
}
_LAYER_SECTIONS = ("linear", "conv", "pool", "dropout")


def kind_hint(kind: str) -> str | None:
    """What to do instead of a layer kind from another framework (`relu`, `flatten`, `dense`)."""
    return KIND_HINTS.get(kind.lower())


def key_hint(key: str, section: str, value: object = None) -> str | None:
    """A hint for an unknown key from another framework; `section` is "", "train", "linear", "conv", "pool",
    "dropout", ... and `value` the value written for it (an integer makes the hint concrete)."""
    name = key.lower()
    if name in ("lr", "learning_rate"):
        number = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
        example = f": lr_inv {number} means lr = 1/{number}" if number else " (lr = 1/lr_inv)"
        return f"did you mean 'lr_inv'? nitrogen takes the inverse of the learning rate{example}"
    for where in (section, "layer" if section in _LAYER_SECTIONS else None):
        text = _KEY_HINTS.get((where or "", name))
        if text is not None:
            return text.format(key=key)
    return None


def no_space_hint(text: str) -> str | None:
    """'lr_inv:64' -> the hint to write 'lr_inv: 64'; None for text that is not key:value."""
    m = NO_SPACE.fullmatch(text.strip())
    if m is None:
        return None
    return f"put a space after the colon: '{m.group(1)}: {m.group(2)}' (YAML reads '{m.group()}' as one word)"


def _number(text: str) -> float | None:
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def float_hint(key: str | None, text: str) -> str:
    """The hint for a fractional number written for `key`: spec values are integers, and the keys that take
    a fraction elsewhere (a learning rate, a decay, a dropout rate) take its inverse or a percentage here."""
    value = _number(text)
    generic = "nitrogen is integer-only: write an integer"
    if value is None or value <= 0 or key is None:
        return generic
    if key in ("lr", "learning_rate"):
        return f"nitrogen takes lr_inv = 1/lr, the inverse of the learning rate: for lr = {text} write lr_inv " \
               f"{max(1, round(1 / value))}"
    if key == "lr_inv":
        if value >= 1:
            return f"lr_inv is an integer, the inverse of the learning rate: write {round(value)}"
        return f"lr_inv is 1/lr, the inverse of the learning rate: for lr = {text} write {max(1, round(1 / value))}"
    if key in ("fwd_decay_inv", "subnet_decay_inv"):
        if value >= 1:
            return f"{key} is an integer: write {round(value)}"
        return f"{key} is the inverse of the weight decay: for a decay of {text} write {round(1 / value)}"
    if key == "rate_pct":
        if value < 1:
            return f"rate_pct is a percentage: a dropout rate of {text} is {round(value * 100)}"
        return f"rate_pct is a whole percentage: write {round(value)}"
    if key.endswith("_pct"):
        return f"{key} is a whole number of percentage points: write {round(value)}"
    return generic


__all__ = ["KIND_HINTS", "NO_SPACE", "float_hint", "key_hint", "kind_hint", "no_space_hint"]
