"""The spec model: frozen dataclasses built from the neutral tree (`tree.py`).

Both surface syntaxes (YAML and the DSL) produce a `tree.TMap`; `build_model` turns it into
a `Model`, checking every key, type and range and collecting all problems before failing.
Every node keeps its `Span`, so later passes can point at the line that caused a problem.
Defaults follow the NITRO-D paper; docs/spec.md lists them.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, fields, is_dataclass, replace
from enum import StrEnum
from typing import Any, Callable, Union

from .errors import Diagnostic, DiagnosticSink, Span, closest, did_you_mean
from .hints import NO_SPACE, float_hint, key_hint, kind_hint, no_space_hint
from .tree import DSL_SUFFIXES, TMap, TNode, TScalar, TSeq


class Semantics(StrEnum):
    NITROGEN = "nitrogen"
    REFERENCE = "reference"


# NITRO-ReLU slope inverse s -> (mean correction mu(s), Kaiming gain(s) * 1000); docs/semantics.md#nitro-relu.
RELU_TABLE: dict[int, tuple[int, int]] = {
    3: (31, 1342), 4: (36, 1372), 5: (38, 1387), 7: (40, 1400), 8: (42, 1403),
    10: (43, 1407), 15: (44, 1411), 16: (44, 1411), 20: (45, 1412),
}
MAX_DIM = 1 << 20  # largest single dimension accepted (sizes above this are surely a typo)
MAX_FAN_IN = (1 << 23) - 1  # the scaling factor 256 * fan_in must fit in int32
# Size limit (E219): the generated C counts and offsets tensor elements in uint32_t, and no 32-bit target can
# hold an object over PTRDIFF_MAX, so no tensor may have more elements, and no context more bytes, than this.
# The tensor check runs here, from the shapes, before anything is lowered or allocated; the exact context
# size is checked by pipeline.analyse() once the memory plan exists.
MAX_SIZE = (1 << 31) - 1

# The model name prefixes every generated identifier. 40 characters keep the longest one, the macro
# <NAME>_CHECKPOINT_SPEC_HASH (name + 21), within C99's 63 significant characters for internal identifiers
# (5.2.4.1). External ones (functions, name + up to 16) go past C99's guaranteed 31, which every toolchain
# nitrogen targets (gcc, clang, arm-none-eabi-gcc) lifts; a test checks the suffix length.
MAX_NAME_CHARS = 40

C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if inline
int long register restrict return short signed sizeof static struct switch typedef union unsigned
void volatile while _Bool _Complex _Imaginary _Alignas _Alignof _Atomic _Generic _Noreturn
_Static_assert _Thread_local alignas alignof bool constexpr false nullptr static_assert
thread_local true typeof typeof_unqual _BitInt _Decimal32 _Decimal64 _Decimal128
""".split())


@dataclass(frozen=True, slots=True)
class LinearBlock:
    """Local-loss block: integer linear -> NITRO-Scaling -> NITRO-ReLU, plus its learning layers."""

    out_features: int
    slope_inv: int
    span: Span
    kind = "linear"  # class attribute, not a field


@dataclass(frozen=True, slots=True)
class ConvBlock:
    """Local-loss block: integer conv2d (stride 1) -> NITRO-Scaling -> NITRO-ReLU, plus its learning layers
    (a learning pool found by the search of docs/semantics.md#learning-pools, flatten, a learning linear to the
    classes)."""

    out_channels: int
    kernel: int
    padding: int
    slope_inv: int
    decoder_dim: int     # P of the learning-pool search; the model's `decoder_dim` unless set on the layer
    learning_pool: str   # "max" (paper) or "avg"; the model's `learning_pool` unless set on the layer
    span: Span
    kind = "conv"


@dataclass(frozen=True, slots=True)
class MaxPool:
    """Feature-extractor max pool: kernel k, stride k, no padding, forward only (docs/semantics.md#pools)."""

    kernel: int
    span: Span
    kind = "maxpool"


@dataclass(frozen=True, slots=True)
class AvgPool:
    """Feature-extractor average pool: kernel k, stride k, no padding, forward only (docs/semantics.md#pools)."""

    kernel: int
    span: Span
    kind = "avgpool"


@dataclass(frozen=True, slots=True)
class Dropout:
    """Training-only dropout of `rate_pct` percent with the integer rescale of docs/semantics.md#dropout."""

    rate_pct: int
    span: Span
    kind = "dropout"


Layer = Union[LinearBlock, ConvBlock, MaxPool, AvgPool, Dropout]
Block = Union[LinearBlock, ConvBlock]
LAYER_KINDS: tuple[str, ...] = ("linear", "conv", "maxpool", "avgpool", "dropout")
BLOCK_KINDS: tuple[str, ...] = ("linear", "conv")
# The key that a DSL call's single positional argument stands for: `linear(100)`, `conv(128)`, `dropout(10)`.
PRIMARY_KEY: dict[str, str] = {"linear": "out_features", "conv": "out_channels", "maxpool": "kernel",
                               "avgpool": "kernel", "dropout": "rate_pct"}
LEARNING_POOLS: tuple[str, ...] = ("max", "avg")
# The keys each layer kind takes (the builders below read them from here).
LAYER_KEYS: dict[str, tuple[str, ...]] = {
    "linear": ("kind", "out_features", "slope_inv"),
    "conv": ("kind", "out_channels", "kernel", "padding", "slope_inv", "decoder_dim", "learning_pool"),
    "maxpool": ("kind", "kernel"), "avgpool": ("kind", "kernel"), "dropout": ("kind", "rate_pct"),
}
DECODER_DIM = 4096  # the paper's decoder dimension (an ablation over 512-8192 favoured it)
# The keys of each section ("" is the top level); the builder checks against these, and a key written in the
# wrong section gets a hint that names the right one.
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "": ("name", "input", "num_classes", "target_value", "semantics", "weight_bits", "decoder_dim", "learning_pool",
         "layers", "train", "init", "allow"),
    "train": ("batch_size", "lr_inv", "amp_model", "fwd_decay_inv", "subnet_decay_inv", "seed", "epochs", "plateau",
              "early_stopping", "augment", "conv_amp_adjust", "stats_samples"),
    "train.plateau": ("factor", "patience", "from_epoch", "min_delta_pct"),
    "train.early_stopping": ("patience", "from_epoch", "min_delta_pct"),
    "train.augment": ("crop_pad", "flip"),
    "init": ("scheme",),
}
# The warnings a spec may declare intended with `allow: [Wnnn, ...]` (or `nitrogen ... --allow Wnnn`).
WARNING_CODES: dict[str, str] = {
    "W201": "a weight-decay inverse above the largest weight (decay never acts)",
    "W202": "a pool kernel that does not divide its input (rows and columns dropped)",
    "W203": "a decoder dimension the learning-pool search cannot reach",
    "W204": "weight_bits ignored because the semantics were overridden to reference",
}


def dropout_scale(rate_pct: int) -> int:
    """R = floor(100000 / (100 - pct)), the integer rescale of docs/semantics.md#dropout (never via
    floating point)."""
    return 100_000 // (100 - rate_pct)


def learning_pool_search(c_out: int, size: int, decoder_dim: int) -> tuple[int, int, int, int, int, int, int]:
    """The learning-pool search of docs/semantics.md#learning-pools for a C_out x size x size block output.

    Returns (kh, kw, ph, pw, dh, dw, D); kh = kw = 1 means no learning pool. D may stay above
    `decoder_dim` when the loop stops because kh >= size (accepted, with warning W203)."""
    kh = kw = 1
    dh = dw = size
    d = c_out * dh * dw
    while d > decoder_dim and kh < size:
        kh *= 2
        dh = -(-size // kh)
        d = c_out * dh * dw
        if d > decoder_dim:
            kw *= 2
            dw = -(-size // kw)
            d = c_out * dh * dw
    ph = pw = 0
    if kh > 1 or kw > 1:
        ph = (kh * (dh - size // kh)) // 2
        pw = (kw * (dw - size // kw)) // 2
    return kh, kw, ph, pw, dh, dw, d


@dataclass(frozen=True, slots=True)
class Plateau:
    """Multiply lr_inv by `factor` after `patience` epochs without a `min_delta_pct` gain
    (docs/semantics.md#training-protocol)."""

    factor: int = 3
    patience: int = 15
    from_epoch: int = 10
    min_delta_pct: int = 1


@dataclass(frozen=True, slots=True)
class EarlyStopping:
    """Stop after `patience` epochs without a `min_delta_pct` gain, counted from `from_epoch`
    (docs/semantics.md#training-protocol)."""

    patience: int = 35
    from_epoch: int = 30
    min_delta_pct: int = 1


@dataclass(frozen=True, slots=True)
class Augment:
    """Training augmentation (docs/semantics.md#augmentation): random crop with padding `crop_pad`, horizontal flip."""

    crop_pad: int = 0
    flip: bool = False


@dataclass(frozen=True, slots=True)
class Train:
    batch_size: int
    lr_inv: int
    amp_model: int
    fwd_decay_inv: int
    subnet_decay_inv: int
    seed: int
    epochs: int
    plateau: Plateau
    early_stopping: EarlyStopping
    augment: Augment
    stats_samples: int     # size of the normalisation statistics sample (docs/semantics.md#preprocessing)
    conv_amp_adjust: bool  # nitrogen-only opt-in: conv amp = amp_model * (H_o^2 // (kh*kw)); see
                           # docs/semantics.md#integersgd


@dataclass(frozen=True, slots=True)
class Init:
    """Integer Kaiming-uniform (docs/semantics.md#initialisation) is the only scheme; the key exists so others
    can be added."""

    scheme: str = "kaiming_uniform"


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    target_value: int
    semantics: Semantics
    weight_bits: int
    layers: tuple[Layer, ...]
    decoder_dim: int      # default P of the conv blocks' learning-pool search (docs/semantics.md#learning-pools)
    learning_pool: str    # default learning-pool type of conv blocks: "max" or "avg"
    train: Train
    init: Init
    source: str  # path as given by the user
    spans: tuple[tuple[str, Span], ...]  # dotted key path -> where it was written
    # Warnings the spec declares intended (`allow`). Like the spans, not part of the network: the canonical
    # form, the hash and the generated C ignore it.
    allow: tuple[str, ...] = ()

    def span(self, key: str) -> Span:
        """Where `key` ("weight_bits", "train.batch_size", "layers[1]") was written, else the model."""
        table = dict(self.spans)
        while key and key not in table:
            key = key.rpartition(".")[0]
        return table.get(key, table[""])

    @property
    def blocks(self) -> tuple[Block, ...]:
        """The local-loss blocks, in order (their position among blocks is the block index)."""
        return tuple(layer for layer in self.layers if isinstance(layer, (LinearBlock, ConvBlock)))

    @property
    def has_conv(self) -> bool:
        return any(isinstance(layer, ConvBlock) for layer in self.layers)

    @property
    def input_len(self) -> int:
        c, h, w = self.input_shape
        return c * h * w

    def canonical(self) -> dict[str, Any]:
        """Everything that defines the network and its training, without spans or file names."""
        return _plain(self)

    @property
    def sha256(self) -> str:
        """Hash of the canonical model: the YAML and DSL forms of one network hash the same."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _plain(obj: Any) -> Any:
    if isinstance(obj, StrEnum):
        return str(obj)
    if is_dataclass(obj):
        out = {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)
               if f.name not in ("span", "spans", "source", "allow")}
        kind = getattr(type(obj), "kind", None)
        if kind is not None:
            out["kind"] = kind
        return out
    if isinstance(obj, tuple):
        return [_plain(v) for v in obj]
    return obj


def with_semantics(model: Model, semantics: str | None) -> Model:
    """The `--semantics` override of the CLI; re-runs the checks that depend on the mode."""
    if semantics is None:
        return model
    out = replace(model, semantics=Semantics(semantics))
    sink = DiagnosticSink()
    _check_model(out, sink)
    sink.raise_if_any()
    return out


# --------------------------------------------------------------------------------------------
# Builder: tree -> Model
# --------------------------------------------------------------------------------------------

class _Builder:
    def __init__(self, source: str, sink: DiagnosticSink) -> None:
        self.source = source
        self.sink = sink
        self.spans: dict[str, Span] = {}
        self.misspelt: set[str] = set()  # required keys an E201 already suggested: no E204 for them as well
        self.decoder_dim = DECODER_DIM
        self.learning_pool = "max"
        self.dsl = source.endswith(DSL_SUFFIXES)

    # -- generic helpers ------------------------------------------------------------------
    def mapping(self, node: TNode, path: str, allowed: dict[str, str], section: str | None = None) \
            -> dict[str, TNode]:
        """Check that `node` is a mapping with known keys; return key -> value node. `section` names the kind
        of mapping for the hints ("train", "conv", ...; default: the path)."""
        if not isinstance(node, TMap):
            spaced = no_space_hint(node.value) if isinstance(node, TScalar) and isinstance(node.value, str) else None
            self.sink.error("E202", f"'{path}' must be a mapping of keys to values, got {_describe(node)}", node.span,
                            hint=spaced or f"valid keys: {', '.join(allowed)}")
            return {}
        out: dict[str, TNode] = {}
        written = {key.name for key, _ in node.items}
        merged = self.merged_layers(node, path)
        for key, value in node.items:
            full = f"{path}.{key.name}" if path else key.name
            if key.name not in allowed:
                self.sink.error("E201", f"unknown key '{full}'", key.span,
                                hint=self.unknown_key_hint(key.name, value, path, section or path, allowed))
                meant = closest(key.name, allowed)
                if meant is not None and meant not in written:
                    self.misspelt.add(f"{path}.{meant}" if path else meant)
            elif key.name in out and merged:
                continue  # one diagnostic for two layers written as one (merged_layers)
            elif key.name in out:
                first = self.spans[full]
                self.sink.error("E203", f"duplicate key '{full}'", key.span,
                                notes=(f"'{full}' is first written at {first.line}:{first.col}",),
                                hint="each key may appear once")
            else:
                out[key.name] = value
                self.spans[full] = key.span
        return out

    def unknown_key_hint(self, name: str, value: TNode, path: str, section: str, allowed: dict[str, str]) -> str:
        """The most specific hint for an unknown key: 'key:value' without a space, a key of another framework
        (lr, in_features, stride), a key of another section, else the closest valid key."""
        m = NO_SPACE.fullmatch(name)
        if m is not None and m.group(1) in allowed:  # a YAML flow mapping reads {kind:linear} as one key
            return no_space_hint(name) or ""
        habit = key_hint(name, section, value.value if isinstance(value, TScalar) else None)
        if habit is not None:
            return habit
        homes = [where for where, keys in SECTION_KEYS.items() if name in keys and where != path]
        if homes and path.startswith("layers["):
            homes = []  # a layer's `patience` is a typo, not a misplaced train key
        if len(homes) > 1:
            return f"'{name}' belongs in {' or '.join(repr(home) for home in homes)}"
        if homes:
            home = homes[0]
            if home == "":
                return f"'{name}' is a top-level key: move it out of '{path}'"
            if path.startswith(home + "."):
                return f"'{name}' belongs directly in '{home}', not in '{path}'"
            last = home.rpartition(".")[2]
            how = f"move it into '{last} {{ ... }}'" if self.dsl else f"indent it under '{last}:'"
            return f"'{name}' belongs in '{home}': {how}"
        owners = [kind for kind, keys in LAYER_KEYS.items() if name in keys and name != "kind"]
        if owners and not path.startswith("layers["):
            return f"'{name}' is a key of {', '.join(owners)} layers: it belongs in an item of 'layers'"
        return did_you_mean(name, allowed) + (f"; '{name}' is a key of {', '.join(owners)} layers" if owners else "")

    def merged_layers(self, node: TMap, path: str) -> bool:
        """E203 once for a layer item with a second 'kind': two layers with the '- ' of the second missing
        (YAML reads them as one mapping with duplicate keys). True if so."""
        if self.dsl or not path.startswith("layers[") or sum(k.name == "kind" for k, _ in node.items) < 2:
            return False
        names = [k.name for k, _ in node.items]
        second = next(k for i, (k, _) in enumerate(node.items) if k.name in names[:i])  # the first repeated key
        kind2 = [k for k, _ in node.items if k.name == "kind"][1]
        flow = second.span.line == node.span.line
        self.sink.error(
            "E203", f"missing '- ': two layers are written as one item '{path}'", second.span,
            notes=("YAML reads both layers as one mapping, in which 'kind' appears twice" + (
                "" if second is kind2 else f" (the second time at {kind2.span.line}:{kind2.span.col})"),),
            hint="end the first layer with '}' and start the second with ', {'" if flow else
            "start each layer with '- ', at the column of the first layer's '- '")
        return True

    def integer(self, node: TNode | None, path: str, default: int | None, lo: int, hi: int,
                span: Span, why: str = "") -> int:
        if node is None:
            if default is None:
                self.missing(path, span, f"add '{path.rpartition('.')[2]}', an integer in [{lo}, {hi}]")
                return lo
            return default
        if not isinstance(node, TScalar) or isinstance(node.value, bool) or not isinstance(node.value, int):
            self.sink.error("E205", f"'{path}' must be an integer, got {_describe(node)}", node.span,
                            hint=_integer_hint(path, node))
            return default if default is not None else lo
        if not lo <= node.value <= hi:
            if node.value > hi == MAX_DIM:
                why = f"nitrogen's size limit: one dimension is at most 2^20 = {MAX_DIM}"
            self.sink.error("E206", f"'{path}' is {node.value}, outside [{lo}, {hi}]", node.span,
                            hint=why or None)
            return default if default is not None else lo
        return node.value

    def missing(self, path: str, span: Span, hint: str | None = None) -> None:
        """E204, unless an unknown key that is probably this one misspelt was reported already."""
        if path not in self.misspelt:
            self.sink.error("E204", f"missing required key '{path}'", span, hint=hint)

    def boolean(self, node: TNode | None, path: str, default: bool) -> bool:
        if node is None:
            return default
        if not isinstance(node, TScalar) or not isinstance(node.value, bool):
            self.sink.error("E205", f"'{path}' must be true or false, got {_describe(node)}", node.span)
            return default
        return node.value

    def choice(self, node: TNode | None, path: str, default: str | None, options: tuple[str, ...],
               span: Span) -> str:
        if node is None:
            if default is None:
                self.missing(path, span, f"expected one of: {', '.join(options)}")
                return options[0]
            return default
        if not isinstance(node, TScalar) or not isinstance(node.value, str):
            self.sink.error("E205", f"'{path}' must be one of {', '.join(options)}; got {_describe(node)}",
                            node.span)
            return default or options[0]
        if node.value not in options:
            self.sink.error("E207", f"unknown {path} '{node.value}'", node.span, hint=did_you_mean(node.value, options))
            return default or options[0]
        return node.value

    # -- sections -------------------------------------------------------------------------
    def model(self, root: TNode) -> Model:
        keys = dict.fromkeys(SECTION_KEYS[""], "")
        if not isinstance(root, TMap):  # without top-level keys every other check would only repeat this one
            looks_dsl = isinstance(root, TScalar) and str(root.value).startswith("model ")
            self.sink.error("E202", f"the spec must be a mapping of keys to values, got {_describe(root)}", root.span,
                            hint="this looks like the DSL, whose files end in .ng" if looks_dsl else
                            f"valid keys: {', '.join(keys)}")
            self.sink.raise_if_any()
        top = self.mapping(root, "", keys)
        here = root.span
        self.spans[""] = here
        name = self.name(top.get("name"), here)
        shape = self.input_shape(top.get("input"), here)
        classes = self.integer(top.get("num_classes"), "num_classes", None, 2, 255, here,
                               "labels are uint8, and a classifier needs at least two classes")
        target = self.integer(top.get("target_value"), "target_value", 32, 0, 127, here,
                              "the one-hot target is an int8 value (the paper uses 32)")
        semantics = Semantics(self.choice(top.get("semantics"), "semantics", "nitrogen",
                                          tuple(s.value for s in Semantics), here))
        bits = self.integer(top.get("weight_bits"), "weight_bits", 16, 8, 32, here,
                            "nitrogen stores weights in b bits with 8 <= b <= 32 (initial weights reach 64)")
        if semantics is Semantics.REFERENCE and "weight_bits" in top:
            # Decision: a spec that states both is a contradiction, like conv_amp_adjust. A spec whose semantics
            # are overridden on the command line keeps its weight_bits, ignored with warning W204 (lint).
            self.sink.error("E217", "weight_bits is a nitrogen-semantics option", self.spans["weight_bits"],
                            notes=("reference semantics store weights in int32 and let them wrap, as the published "
                                   "implementation does",),
                            hint="remove weight_bits, or use nitrogen semantics for saturating b-bit weights")
        self.decoder_dim = self.integer(top.get("decoder_dim"), "decoder_dim", DECODER_DIM, 1, MAX_FAN_IN, here,
                                        "the largest fan-in wanted for a conv block's learning linear")
        self.learning_pool = self.choice(top.get("learning_pool"), "learning_pool", "max", LEARNING_POOLS, here)
        layers = self.layers(top.get("layers"), here)
        train = self.train(top.get("train"), here, classes)
        init = self.init(top.get("init"))
        allow = self.allow(top.get("allow"))
        return Model(name, shape, classes, target, semantics, bits, layers, self.decoder_dim, self.learning_pool,
                     train, init, self.source, tuple(sorted(self.spans.items())), allow)

    def allow(self, node: TNode | None) -> tuple[str, ...]:
        """`allow: [W202, ...]`: warnings the author declares intended; a single code may stand alone."""
        if node is None:
            return ()
        items = node.items if isinstance(node, TSeq) else (node,)
        codes: list[str] = []
        for item in items:
            if not isinstance(item, TScalar) or not isinstance(item.value, str):
                self.sink.error("E205", f"'allow' must be a list of warning codes, got {_describe(item)}", item.span,
                                hint=f"the codes are {', '.join(WARNING_CODES)}")
            elif item.value not in WARNING_CODES:
                error = re.fullmatch(r"[Ee]\d{3}", item.value)
                self.sink.error("E207", f"unknown warning code '{item.value}' in 'allow'", item.span,
                                hint="only warnings can be allowed; an error must be fixed" if error else
                                did_you_mean(item.value, WARNING_CODES))
            else:
                codes.append(item.value)
        return tuple(dict.fromkeys(codes))

    def name(self, node: TNode | None, span: Span) -> str:
        if node is None:
            self.missing("name", span, "add 'name', a lower-case C identifier: it prefixes every C symbol")
            return "model"
        if not isinstance(node, TScalar) or not isinstance(node.value, str):
            self.sink.error("E205", f"'name' must be a string, got {_describe(node)}", node.span)
            return "model"
        value = node.value
        if len(value) > MAX_NAME_CHARS:
            self.sink.error("E208", f"name '{value[:20]}...' is {len(value)} characters long, over {MAX_NAME_CHARS}",
                            node.span, hint=f"every generated identifier starts with the name; {MAX_NAME_CHARS} keeps "
                                            f"the longest ({MAX_NAME_CHARS + 21} characters, NAME_CHECKPOINT_SPEC_HASH) "
                                            "within the 63 significant characters C99 guarantees")
        elif not (value.isascii() and value.isidentifier()) or value.startswith("_"):
            ascii_form = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()  # 'é' -> 'e'
            fixed = re.sub(r"[^a-z0-9_]", "_", ascii_form.lower()).strip("_")
            fixed = f"net_{fixed}" if fixed[:1].isdigit() else fixed
            self.sink.error("E208", f"name '{value}' is not a valid C identifier: {_identifier_problem(value)}",
                            node.span, hint="use letters, digits and '_', starting with a letter" + (
                                f": try '{fixed}'" if fixed and fixed not in C_KEYWORDS else ""))
        elif value in C_KEYWORDS:
            self.sink.error("E208", f"name '{value}' is a C keyword", node.span, hint=f"try '{value}_net'")
        elif value.lower() == "ng":
            self.sink.error("E208", f"name '{value}' is reserved by nitrogen", node.span,
                            hint="the generated code's own symbols start with ng_; choose another name, e.g. 'net'")
        elif value != value.lower():
            self.sink.error("E208", f"name '{value}' must be lower case", node.span,
                            hint=f"try '{value.lower()}' (macros use the upper-case form)")
        return value

    def input_shape(self, node: TNode | None, span: Span) -> tuple[int, int, int]:
        if node is None:
            self.missing("input", span, "add 'input', the input shape [channels, height, width]")
            return (1, 1, 1)
        if not isinstance(node, TSeq) or len(node.items) != 3:
            self.sink.error("E205", f"'input' must be [channels, height, width], got {_describe(node)}", node.span,
                            hint="a 28x28 grey image is [1, 28, 28]; an MLP input is flattened by the first block")
            return (1, 1, 1)
        c, h, w = (self.integer(item, f"input[{i}]", None, 1, MAX_DIM, node.span) for i, item in
                   enumerate(node.items))
        return (c, h, w)

    def layers(self, node: TNode | None, span: Span) -> tuple[Layer, ...]:
        if node is None:
            self.missing("layers", span, "add 'layers', the network's items in order, with at least one linear "
                                         "or conv block")
            return ()
        if not isinstance(node, TSeq):
            self.sink.error("E205", f"'layers' must be a list, got {_describe(node)}", node.span,
                            hint="each layer is one list item, as in '- {kind: linear, out_features: 100}'")
            return ()
        return tuple(layer for i, item in enumerate(node.items) if (layer := self.layer(item, i)) is not None)

    def layer(self, node: TNode, index: int) -> Layer | None:
        path = f"layers[{index}]"
        self.spans[path] = node.span
        if not isinstance(node, TMap):
            self.sink.error("E202", f"'{path}' must be a mapping, got {_describe(node)}", node.span,
                            hint="a layer is a mapping such as {kind: linear, out_features: 100}")
            return None
        kind_node = dict((k.name, v) for k, v in node.items).get("kind")
        if kind_node is None:
            spaced = next((k for k, _ in node.items if k.name.startswith("kind:")), None)  # {kind:linear}
            typo = next((k for k, _ in node.items if closest(k.name, ("kind",))), None)  # `knd: linear`
            if spaced is not None:
                self.sink.error("E204", f"'{path}' has no 'kind'", spaced.span, hint=no_space_hint(spaced.name))
            elif typo is not None:
                self.sink.error("E204", f"'{path}' has no 'kind'", typo.span,
                                hint=f"did you mean 'kind' instead of '{typo.name}'?")
            else:
                self.sink.error("E204", f"'{path}' has no 'kind'", node.span, hint=did_you_mean("", LAYER_KINDS))
            return None
        if not isinstance(kind_node, TScalar) or not isinstance(kind_node.value, str):
            self.sink.error("E205", f"'{path}.kind' must be a name, got {_describe(kind_node)}", kind_node.span)
            return None
        kind = kind_node.value
        if kind not in LAYER_KINDS:
            habit = kind_hint(kind)
            self.sink.error("E207", f"unknown layer kind '{kind}'", kind_node.span,
                            hint=f"{habit}; the layer kinds are {', '.join(LAYER_KINDS)}" if habit else
                            did_you_mean(kind, LAYER_KINDS))
            return None
        return LAYER_BUILDERS[kind](self, node, path)

    def linear(self, node: TMap, path: str) -> LinearBlock:
        args = self.mapping(node, path, dict.fromkeys(LAYER_KEYS["linear"], ""), "linear")
        out = self.integer(args.get("out_features"), f"{path}.out_features", None, 1, MAX_DIM, node.span)
        return LinearBlock(out, self.slope(args, path, node.span), node.span)

    def slope(self, args: dict[str, TNode], path: str, span: Span) -> int:
        slope = self.integer(args.get("slope_inv"), f"{path}.slope_inv", 4, 1, 1 << 30, span)
        if slope not in RELU_TABLE and "slope_inv" in args:
            gap = min(abs(s - slope) for s in RELU_TABLE)
            nearest = " or ".join(str(s) for s in RELU_TABLE if abs(s - slope) == gap)
            self.sink.error("E207", f"unsupported {path}.slope_inv {slope}", args["slope_inv"].span,
                            hint=f"NITRO-ReLU supports slope_inv in {', '.join(map(str, RELU_TABLE))} "
                                 f"(the nearest: {nearest})")
            return 4
        return slope

    def conv(self, node: TMap, path: str) -> ConvBlock:
        args = self.mapping(node, path, dict.fromkeys(LAYER_KEYS["conv"], ""), "conv")
        out = self.integer(args.get("out_channels"), f"{path}.out_channels", None, 1, MAX_DIM, node.span)
        kernel = self.integer(args.get("kernel"), f"{path}.kernel", 3, 1, 255, node.span,
                              "square kernels of 1 to 255 cells per side")
        # Decision: the default padding keeps the spatial size for odd kernels ("same"), as the paper's 3x3/1.
        pad_node = args.get("padding")
        if isinstance(pad_node, TScalar) and isinstance(pad_node.value, str) and \
                pad_node.value.lower() in ("same", "valid", "full"):
            self.sink.error("E205", f"'{path}.padding' must be an integer, got '{pad_node.value}'", pad_node.span,
                            hint=_padding_hint(pad_node.value.lower(), kernel))
            pad_node = None
        padding = self.integer(pad_node, f"{path}.padding", kernel // 2, 0, kernel - 1, node.span,
                               "zero padding p must satisfy 0 <= p < kernel")
        decoder = self.integer(args.get("decoder_dim"), f"{path}.decoder_dim", self.decoder_dim, 1, MAX_FAN_IN,
                               node.span)
        pool = self.choice(args.get("learning_pool"), f"{path}.learning_pool", self.learning_pool, LEARNING_POOLS,
                           node.span)
        return ConvBlock(out, kernel, padding, self.slope(args, path, node.span), decoder, pool, node.span)

    def maxpool(self, node: TMap, path: str) -> MaxPool:
        args = self.mapping(node, path, dict.fromkeys(LAYER_KEYS["maxpool"], ""), "pool")
        return MaxPool(self.integer(args.get("kernel"), f"{path}.kernel", 2, 1, 255, node.span), node.span)

    def avgpool(self, node: TMap, path: str) -> AvgPool:
        args = self.mapping(node, path, dict.fromkeys(LAYER_KEYS["avgpool"], ""), "pool")
        return AvgPool(self.integer(args.get("kernel"), f"{path}.kernel", 2, 1, 255, node.span), node.span)

    def dropout(self, node: TMap, path: str) -> Dropout:
        args = self.mapping(node, path, dict.fromkeys(LAYER_KEYS["dropout"], ""), "dropout")
        return Dropout(self.integer(args.get("rate_pct"), f"{path}.rate_pct", None, 1, 99, node.span,
                                    "the dropout rate is a whole percentage"), node.span)

    def train(self, node: TNode | None, span: Span, classes: int) -> Train:
        t = self.mapping(node, "train", dict.fromkeys(SECTION_KEYS["train"], "")) if node is not None else {}
        here = node.span if node is not None else span
        big = 1 << 31
        plateau_node = t.get("plateau")
        p = self.mapping(plateau_node, "train.plateau", dict.fromkeys(SECTION_KEYS["train.plateau"], "")) \
            if plateau_node is not None else {}
        early_node = t.get("early_stopping")
        e = self.mapping(early_node, "train.early_stopping", dict.fromkeys(SECTION_KEYS["train.early_stopping"], "")) \
            if early_node is not None else {}
        aug_node = t.get("augment")
        a = self.mapping(aug_node, "train.augment", dict.fromkeys(SECTION_KEYS["train.augment"], "")) \
            if aug_node is not None else {}
        return Train(
            batch_size=self.integer(t.get("batch_size"), "train.batch_size", 64, 1, 1 << 16, here),
            lr_inv=self.integer(t.get("lr_inv"), "train.lr_inv", 512, 1, big - 1, here),
            amp_model=self.integer(t.get("amp_model"), "train.amp_model", 64 * classes, 1, big - 1, here),
            fwd_decay_inv=self.integer(t.get("fwd_decay_inv"), "train.fwd_decay_inv", 0, 0, big - 1, here,
                                       "0 disables weight decay"),
            subnet_decay_inv=self.integer(t.get("subnet_decay_inv"), "train.subnet_decay_inv", 0, 0, big - 1,
                                          here, "0 disables weight decay"),
            seed=self.integer(t.get("seed"), "train.seed", 42, 0, (1 << 64) - 1, here),
            epochs=self.integer(t.get("epochs"), "train.epochs", 150, 1, 1 << 20, here),
            plateau=Plateau(
                factor=self.integer(p.get("factor"), "train.plateau.factor", 3, 1, 1 << 16, here),
                patience=self.integer(p.get("patience"), "train.plateau.patience", 15, 1, 1 << 20, here),
                from_epoch=self.integer(p.get("from_epoch"), "train.plateau.from_epoch", 10, 1, 1 << 20, here),
                min_delta_pct=self.integer(p.get("min_delta_pct"), "train.plateau.min_delta_pct", 1, 0, 100,
                                           here)),
            early_stopping=EarlyStopping(
                patience=self.integer(e.get("patience"), "train.early_stopping.patience", 35, 1, 1 << 20, here),
                from_epoch=self.integer(e.get("from_epoch"), "train.early_stopping.from_epoch", 30, 1, 1 << 20,
                                        here),
                min_delta_pct=self.integer(e.get("min_delta_pct"), "train.early_stopping.min_delta_pct", 1, 0,
                                           100, here)),
            augment=Augment(
                crop_pad=self.integer(a.get("crop_pad"), "train.augment.crop_pad", 0, 0, 1 << 10, here),
                flip=self.boolean(a.get("flip"), "train.augment.flip", False)),
            stats_samples=self.integer(t.get("stats_samples"), "train.stats_samples", 25_000, 1, 1 << 31, here,
                                       "samples of the training set used for the normalisation statistics"),
            conv_amp_adjust=self.boolean(t.get("conv_amp_adjust"), "train.conv_amp_adjust", False),
        )

    def init(self, node: TNode | None) -> Init:
        if node is None:
            return Init()
        i = self.mapping(node, "init", dict.fromkeys(SECTION_KEYS["init"], ""))
        return Init(self.choice(i.get("scheme"), "init.scheme", "kaiming_uniform", ("kaiming_uniform",), node.span))


LAYER_BUILDERS: dict[str, Callable[[_Builder, TMap, str], Layer]] = {
    "linear": _Builder.linear, "conv": _Builder.conv, "maxpool": _Builder.maxpool, "avgpool": _Builder.avgpool,
    "dropout": _Builder.dropout,
}


def _identifier_problem(name: str) -> str:
    """Why `name` is not a C identifier nitrogen accepts (the first reason)."""
    if not name:
        return "it is empty"
    if name[0].isdigit():
        return "it starts with a digit"
    if name[0] == "_":
        return "it starts with '_' (such names are reserved for the C implementation)"
    bad = next(c for c in name if not (c.isascii() and (c.isalnum() or c == "_")))
    return f"'{bad}' is not {'an ASCII ' if not bad.isascii() else 'a '}letter, digit or '_'"


def _digits(value: object) -> str | None:
    """The integer a text value was meant to be: '1e9' (YAML 1.1 and the DSL read exponent notation as
    text) -> '1000000000', a quoted '3' -> '3'; else None."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}", value):
        return f"{value} without quotes"
    m = re.fullmatch(r"([0-9]+)[eE]\+?([0-9]{1,2})", value) if isinstance(value, str) else None
    return m.group(1) + "0" * int(m.group(2)) if m else None


def _padding_hint(word: str, kernel: int) -> str:
    """E205 for `padding: same` (valid, full): the number of cells that means."""
    if word == "valid":
        return "padding is a number of zero cells on each side: 'valid' is 0"
    if word == "full":
        return f"padding is a number of zero cells on each side: 'full' for kernel {kernel} is {kernel - 1}"
    if kernel % 2:
        return f"padding is a number of zero cells on each side: 'same' for a {kernel}x{kernel} kernel is " \
               f"{kernel // 2}, the default (delete the key)"
    return f"padding is a number of zero cells on each side; an even kernel ({kernel}) cannot keep the size: " \
           f"{kernel // 2 - 1} shrinks it by 1, {kernel // 2} (the default) grows it by 1"


def _integer_hint(path: str, node: TNode) -> str | None:
    """The hint of E205 for a value that should have been an integer."""
    key = path.rpartition(".")[2]
    if isinstance(node, TSeq) and key == "kernel":
        sides = {item.value for item in node.items if isinstance(item, TScalar)}
        if len(sides) == 1 and len(node.items) == 2:
            side = sides.pop()
            return f"kernels are square: write {side} for a {side}x{side} kernel"
        return "kernels are square (k x k): write one integer"
    text = node.value if isinstance(node, TScalar) else None
    if not isinstance(text, str):
        return None
    digits = _digits(text)
    if digits:
        return f"'{text}' is read as text, not a number; write {digits}"
    if re.fullmatch(r"[-+]?[0-9_]*\.?[0-9_]*(?:[eE][-+]?[0-9]+)?", text) and any(c.isdigit() for c in text):
        return float_hint(key, text)  # '1e-3' (YAML 1.1 reads it as text) or a quoted '0.002'
    return None


def _describe(node: TNode) -> str:
    if isinstance(node, TMap):
        return "a mapping"
    if isinstance(node, TSeq):
        return f"a list of {len(node.items)} value{'s' if len(node.items) != 1 else ''}"
    if node.value is None:
        return "nothing"
    if isinstance(node.value, bool):
        if node.text is not None:  # `name: on`
            return f"'{node.text}', which YAML 1.1 reads as {str(node.value).lower()} (write \"{node.text}\" for text)"
        return f"'{str(node.value).lower()}'"
    if isinstance(node.value, str):
        return f"'{node.value}'" if len(node.value) <= 40 else f"'{node.value[:37]}...'"
    return str(node.value)


Shape = tuple[int, int, int]  # (C, H, W); a linear block's output is (n, 1, 1)


@dataclass(frozen=True, slots=True)
class Stage:
    """One item of the network with its inferred shapes (docs/semantics.md#network-structure)."""

    layer: Layer
    index: int        # position in `layers` (names pools and dropouts: pool{index}, drop{index})
    block: int        # block index among the local-loss blocks (names blocks: b{block}), or -1
    in_shape: Shape
    out_shape: Shape


def stages(model: Model, sink: DiagnosticSink | None = None) -> tuple[Stage, ...]:
    """Walk the items, inferring every shape; report items that do not fit to `sink` (when given)."""
    def error(code: str, message: str, span: Span, hint: str) -> None:
        if sink is not None:
            sink.error(code, message, span, hint=hint)

    out: list[Stage] = []
    shape: Shape = model.input_shape
    block = 0
    seen_linear = False
    for index, layer in enumerate(model.layers):
        c, h, w = shape
        new: Shape = shape
        number = -1
        if isinstance(layer, LinearBlock):
            seen_linear = True
            new, number = (layer.out_features, 1, 1), block
        elif isinstance(layer, ConvBlock):
            number = block
            if seen_linear:
                error("E214", "a conv block cannot follow a linear block", layer.span,
                      "conv blocks and pools form the feature extractor, before every linear block")
            if h != w:
                error("E215", f"a conv block needs a square input, got {h}x{w}", layer.span,
                      "CNN inputs must be square (docs/semantics.md#network-structure)")
            size = h + 2 * layer.padding - layer.kernel + 1
            if size < 1:
                error("E216", f"kernel {layer.kernel} with padding {layer.padding} does not fit the {h}x{w} input",
                      layer.span, f"the output would be {size}x{size}; use a smaller kernel or more padding")
                size = 1
            new = (layer.out_channels, size, size)
        elif isinstance(layer, (MaxPool, AvgPool)):
            if seen_linear:
                error("E214", f"a {layer.kind} cannot follow a linear block", layer.span,
                      "pools belong to the feature extractor, before every linear block")
            elif layer.kernel > min(h, w):
                error("E216", f"pool kernel {layer.kernel} is larger than its {h}x{w} input", layer.span,
                      "a feature-extractor pool has stride = kernel and no padding: H_o = H // kernel")
                new = (c, 1, 1)
            else:
                new = (c, h // layer.kernel, w // layer.kernel)
        if number >= 0:
            block += 1
        out.append(Stage(layer, index, number, shape, new))
        shape = new
    return tuple(out)


def _check_model(model: Model, sink: DiagnosticSink) -> None:
    """Cross-key checks that need the whole model."""
    c, h, w = model.input_shape
    if model.input_len > MAX_FAN_IN:
        sink.error("E212", f"input {c}x{h}x{w} has {model.input_len} values, more than {MAX_FAN_IN}",
                   model.span("input"), hint="NITRO-Scaling needs 256 x fan_in to fit in 32 bits")
    fan_hint = "NITRO-Scaling needs 256 x fan_in to fit in 32 bits"
    ref = model.semantics is Semantics.REFERENCE
    bs = model.train.batch_size

    def size(what: str, dims: tuple[int, ...], span: Span, fix: str) -> bool:
        """E219 when a tensor has more than MAX_SIZE elements; True if it does."""
        count = _prod(dims)
        if count > MAX_SIZE:
            sink.error("E219", f"{what} would have {' x '.join(map(str, dims))} = {count} elements, more than "
                       "2^31 - 1", span, hint=f"a tensor of the generated C holds at most 2^31 - 1 elements "
                       f"(nitrogen's size limit); {fix}")
        return count > MAX_SIZE

    # One diagnostic per problem: a batch tensor is reported where it first crosses the limit, not again at
    # every layer after it, and a weight matrix whose fan-in is already over MAX_FAN_IN only gets E212.
    over = size("the input batch", (bs, c, h, w), model.span("input"), "use a smaller input or train.batch_size")
    walk = stages(model, sink)
    for st in walk:
        layer = st.layer
        cin, hin, win = st.in_shape
        if isinstance(layer, LinearBlock) and cin * hin * win <= MAX_FAN_IN:
            size(f"the weights of layer {st.index}", (layer.out_features, cin * hin * win), layer.span,
                 "use fewer units, or pool before this layer")
        elif isinstance(layer, ConvBlock) and cin * layer.kernel ** 2 <= MAX_FAN_IN:
            size(f"the weights of conv layer {st.index}", (layer.out_channels, cin, layer.kernel, layer.kernel),
                 layer.span, "use fewer channels")
        dims = st.out_shape[:1] if st.out_shape[1:] == (1, 1) else st.out_shape
        if not over:
            over = size(f"the output of layer {st.index} over the batch", (bs, *dims), layer.span,
                        "use fewer units or channels, or a smaller train.batch_size")
        elif _prod(st.out_shape) < _prod(st.in_shape):
            over = bs * _prod(st.out_shape) > MAX_SIZE
        if isinstance(layer, LinearBlock) and layer.out_features > MAX_FAN_IN:
            sink.error("E212", f"layer {st.index} has {layer.out_features} outputs, more than {MAX_FAN_IN}",
                       layer.span, hint=fan_hint)
        if isinstance(layer, LinearBlock) and MAX_FAN_IN < cin * hin * win != model.input_len:  # else: E212 above
            sink.error("E212", f"layer {st.index} has a fan-in of {cin * hin * win}, more than {MAX_FAN_IN}",
                       layer.span, hint=fan_hint)
        if isinstance(layer, ConvBlock):
            fan_in = cin * layer.kernel * layer.kernel
            if fan_in > MAX_FAN_IN:
                sink.error("E212", f"conv layer {st.index} has a fan-in of {fan_in}, more than {MAX_FAN_IN}",
                           layer.span, hint=fan_hint)
            kh, kw, ph, pw, _, _, d = learning_pool_search(layer.out_channels, st.out_shape[1], layer.decoder_dim)
            if d > MAX_FAN_IN:
                sink.error("E212", f"the learning linear of conv layer {st.index} has a fan-in of {d}",
                           layer.span, hint=fan_hint)
            adjust = st.out_shape[1] * st.out_shape[2] // (kh * kw)
            if model.train.conv_amp_adjust and not ref and adjust == 0:
                sink.error("E218", f"conv_amp_adjust makes the amplification of conv layer {st.index} zero",
                           layer.span, hint=f"H_o^2 // (kh*kw) = {st.out_shape[1] ** 2} // {kh * kw} = 0 with "
                                            f"learning pool ({kh}, {kw}); raise decoder_dim or drop the option")
            if ref and layer.learning_pool == "avg" and (ph or pw):
                sink.error("E217", f"an average learning pool with padding ({ph}, {pw}) is not supported in "
                           "reference semantics", layer.span,
                           hint="the published implementation does not crop the padding in its backward pass; "
                                "use learning_pool: max or nitrogen semantics")
        if isinstance(layer, Dropout) and ref and layer.rate_pct % 5:
            sink.error("E217", f"dropout rate {layer.rate_pct}% is not a multiple of 5", layer.span,
                       hint="reference semantics accept 5, 10, ..., 95, as published; nitrogen accepts 1-99")
    fan_out = _prod(walk[-1].out_shape) if walk else model.input_len
    if walk and fan_out > MAX_FAN_IN:
        sink.error("E212", f"the output layer has a fan-in of {fan_out} (the output of layer {walk[-1].index}, "
                   f"{'x'.join(map(str, walk[-1].out_shape))}), more than {MAX_FAN_IN}", walk[-1].layer.span,
                   hint=f"{fan_hint}; end the network with a pool or a linear block")
    if ref and model.train.conv_amp_adjust:
        sink.error("E217", "conv_amp_adjust is a nitrogen-semantics option", model.span("train.conv_amp_adjust"),
                   hint="the published implementation never applies the adjusted factor")
    if not model.blocks:
        sink.error("E213", "the network has no local-loss block", model.span("layers"),
                   hint="add a linear or conv block: the blocks are what trains (pools and dropout only "
                        "reshape)")
    pad = model.train.augment.crop_pad
    if pad > min(h, w):
        sink.error("E210", f"crop padding {pad} is larger than the {h}x{w} input",
                   model.span("train.augment.crop_pad"), hint="crop_pad must be at most min(height, width)")


def _prod(dims: tuple[int, ...]) -> int:
    out = 1
    for d in dims:
        out *= d
    return out


def lint(model: Model, allow: tuple[str, ...] = ()) -> tuple[Diagnostic, ...]:
    """Warnings: legal specs that probably do not do what their author meant, except those the spec's
    `allow` list (or `allow`, from the command line) declares intended."""
    out = []
    if model.semantics is Semantics.REFERENCE and "weight_bits" in dict(model.spans):
        # Only a command-line override gets here: a spec that states both is E217.
        out.append(Diagnostic("W204", f"weight_bits = {model.weight_bits} is ignored in reference semantics",
                              model.span("weight_bits"),
                              ("the semantics were overridden to reference; the published implementation keeps "
                               "weights in int32 and lets them wrap",),
                              f"use nitrogen semantics for {model.weight_bits}-bit saturating weights; add W204 to "
                              "the spec's allow list (or --allow W204) if this is intended", "warning"))
    wmax = (1 << (model.weight_bits - 1)) - 1
    for key in ("fwd_decay_inv", "subnet_decay_inv"):
        decay = getattr(model.train, key)
        if model.semantics is Semantics.NITROGEN and decay > wmax:
            out.append(Diagnostic("W201", f"train.{key} = {decay} can never act on {model.weight_bits}-bit weights",
                                  model.span(f"train.{key}"),
                                  (f"decay changes a weight only when |W| >= decay_inv, but |W| <= {wmax}",),
                                  f"use a decay_inv <= {wmax}, 0 to disable decay, or more weight_bits", "warning"))
    for st in stages(model):
        layer = st.layer
        _, h, w = st.in_shape
        if isinstance(layer, (MaxPool, AvgPool)) and (h % layer.kernel or w % layer.kernel):
            out.append(Diagnostic("W202", f"pool kernel {layer.kernel} does not divide its {h}x{w} input",
                                  layer.span, (f"the output is {h // layer.kernel}x{w // layer.kernel}; the last "
                                               f"{h % layer.kernel} row(s) and {w % layer.kernel} column(s) are "
                                               "dropped (floor, as the paper's pools)",),
                                  _w202_hint(layer.kernel, h, w, model.layers[:st.index]), "warning"))
        if isinstance(layer, ConvBlock):
            kh, kw, _, _, dh, dw, d = learning_pool_search(layer.out_channels, st.out_shape[1], layer.decoder_dim)
            if d > layer.decoder_dim:
                out.append(Diagnostic("W203", f"decoder dimension {layer.decoder_dim} cannot be reached: the "
                                      f"learning linear has fan-in {d}", layer.span,
                                      (f"the learning pool stops at kernel ({kh}, {kw}) with {layer.out_channels}"
                                       f"x{dh}x{dw} outputs (docs/semantics.md#learning-pools)",),
                                      f"raise decoder_dim to at least {d} or use fewer channels", "warning"))
    hidden = set(model.allow) | set(allow)
    return tuple(d for d in out if d.code not in hidden)


def _w202_hint(kernel: int, h: int, w: int, before: tuple[Layer, ...]) -> str:
    """How to keep every row of a pool's h x w input, from the spec's own geometry (`before`: the layers
    in front of the pool)."""
    def up(n: int) -> int:
        return -(-n // kernel) * kernel

    shaping = [layer for layer in before if not isinstance(layer, Dropout)]
    how = " (more padding in the conv block before it)" if shaping and isinstance(shaping[-1], ConvBlock) else \
        " (pad or resize the input)" if not shaping else ""
    fits = [k for k in range(2, min(h, w)) if h % k == 0 and w % k == 0]
    other = f", or use a pool kernel that divides {h}x{w} ({', '.join(map(str, fits))})" if fits else ""
    return f"if dropping them is intended, add W202 to the spec's allow list; otherwise make this pool's input " \
           f"{up(h)}x{up(w)}{how}{other}"


def build_model(root: TNode, source: str) -> Model:
    """Tree -> Model, or NitrogenError listing every problem found."""
    sink = DiagnosticSink()
    model = _Builder(source, sink).model(root)
    _in_source_order(sink).raise_if_any()
    _check_model(model, sink)
    _in_source_order(sink).raise_if_any()
    return model


def _in_source_order(sink: DiagnosticSink) -> DiagnosticSink:
    """Sort the collected diagnostics by line (stable: within a line, in the order of the checks), so they
    read top to bottom like the spec."""
    sink.items.sort(key=lambda d: d.span.line if d.span else 0)
    return sink
