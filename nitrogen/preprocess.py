"""Data preprocessing (docs/semantics.md#preprocessing), in NumPy integers (no floating point).

* centring: x_c = x - 128;
* statistics: pi_0 = permutation(N_train) from rng_data = PCG32 seed(s, 1); the statistics set S is
  the first min(stats_samples, N_train) samples in pi_0 order; per channel, with n = |S|*H*W and int64 sums,
  mean_c = tdiv(sum x_c, n) and MAD_c = tdiv(sum |x_c - mean_c|, n), using the truncated mean;
* normalisation: x_n = clip(tdiv((x_c - mean_c) * 51, MAD_c), -128, 127) as int8, for the training and
  the test set alike, with the training statistics.

The generated C offers the same normalisation (`<name>_normalize`, constants baked in at compile time,
see `emit.py`); `tests/test_preprocess.py` checks the two bit for bit. The PRNG is the reference's PCG32,
so the statistics sample is the one docs/semantics.md#random-numbers prescribes.

Memory: inputs are bytes, so neither step needs a wide copy of the data set. The statistics count each
byte value per channel (a 256-bin histogram over the sample, gathered in chunks) and take both sums
from the counts; normalisation is a per-channel lookup table of the 256 results, applied a chunk at a
time, optionally in place. Both give the same integers as the formulas above evaluated over int64
copies of the whole set (tests/test_preprocess.py checks that too), with temporaries of a few MB instead
of several int64 copies of the set (which took MNIST's training run to a peak of 2 GB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import Diagnostic, NitrogenError
from .reference import Pcg32

NORM_SCALE = 51     # docs/semantics.md#preprocessing: aims at a standard deviation of about 64 (MAD ~ sigma / 1.25)
STATS_SAMPLES = 25_000


@dataclass(frozen=True, slots=True)
class Stats:
    """Per-channel integer statistics of the training set (docs/semantics.md#preprocessing)."""

    mean: tuple[int, ...]
    mad: tuple[int, ...]
    samples: int          # |S|
    seed: int             # run seed s of rng_data = seed(s, 1)

    def as_dict(self) -> dict[str, object]:
        return {"mean": list(self.mean), "mad": list(self.mad), "samples": self.samples, "seed": self.seed}


def _tdiv(a: np.ndarray | int, b: int) -> np.ndarray:
    """Truncating division (C99 `/`) for b > 0, in int64."""
    a = np.asarray(a, dtype=np.int64)
    q: np.ndarray = np.where(a < 0, -((-a) // b), a // b)
    return q


_CHUNK = 1 << 20  # values per step of statistics() and normalize(): bounds their temporaries to a few MB


def statistics(train_x: np.ndarray, seed: int, stats_samples: int = STATS_SAMPLES) -> Stats:
    """The statistics of docs/semantics.md#preprocessing on uint8 NCHW training images.

    Counted, not summed over copies: per channel, a histogram of the 256 byte values over the statistics
    set, gathered a chunk of samples at a time. Both sums of the statistics are then exact int64 dot products
    of the counts with (v - 128) and |v - 128 - mean|: the same integers as summing over the samples."""
    if train_x.dtype != np.uint8 or train_x.ndim != 4 or len(train_x) == 0:
        raise ValueError(f"statistics need a non-empty uint8 (N, C, H, W) array, got {train_x.dtype} {train_x.shape}")
    n_samples, channels, h, w = train_x.shape
    order = Pcg32(seed, 1).permutation(n_samples)
    chosen = np.asarray(order[:min(stats_samples, n_samples)], dtype=np.int64)
    counts = np.zeros((channels, 256), dtype=np.int64)
    step = max(1, _CHUNK // (channels * h * w))
    for start in range(0, len(chosen), step):
        block = train_x[np.sort(chosen[start:start + step])]  # the sum does not depend on the order
        for c in range(channels):
            counts[c] += np.bincount(block[:, c].reshape(-1), minlength=256)
    centred = np.arange(256, dtype=np.int64) - 128  # x_c for each byte value
    n = len(chosen) * h * w
    means = [int(_tdiv(int(counts[c] @ centred), n)) for c in range(channels)]
    mads = []
    for c, mean in enumerate(means):
        mad = int(_tdiv(int(counts[c] @ np.abs(centred - mean)), n))
        if mad == 0:
            raise NitrogenError([Diagnostic(
                "E410", f"channel {c} of the training set is constant over the statistics sample (MAD = 0)",
                hint="normalisation divides by the mean absolute deviation (docs/semantics.md#preprocessing); "
                     "check the data")])
        mads.append(mad)
    return Stats(tuple(means), tuple(mads), len(chosen), seed)


def lookup_tables(stats: Stats) -> np.ndarray:
    """Centring and normalisation for every byte value: an int8 table (C, 256), row c maps x to
    clip(tdiv((x - 128 - mean_c) * 51, MAD_c), -128, 127)."""
    x = np.arange(256, dtype=np.int64)
    return np.stack([np.clip(_tdiv((x - 128 - mean) * NORM_SCALE, mad), -128, 127).astype(np.int8)
                     for mean, mad in zip(stats.mean, stats.mad)])


def normalize(x: np.ndarray, stats: Stats, out: np.ndarray | None = None) -> np.ndarray:
    """Centring and normalisation (docs/semantics.md#preprocessing): uint8 NCHW images -> int8.

    The result depends only on a value and its channel, so it is a lookup in `lookup_tables`, a chunk of
    samples at a time (no int64 copy of the set). `out`: an int8 array of x's shape to write into; it may
    be `x.view(np.int8)`, which normalises in place and keeps one copy of the data set in memory."""
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != len(stats.mean):
        raise ValueError(f"normalize needs uint8 (N, {len(stats.mean)}, H, W) images, got {x.dtype} {x.shape}")
    if out is None:
        out = np.empty(x.shape, dtype=np.int8)
    elif out.dtype != np.int8 or out.shape != x.shape:
        raise ValueError(f"normalize writes int8 {x.shape}, got out {out.dtype} {out.shape}")
    tables = lookup_tables(stats)
    step = max(1, _CHUNK // max(1, x[0].size))
    for start in range(0, len(x), step):
        for c in range(x.shape[1]):
            out[start:start + step, c] = tables[c][x[start:start + step, c]]
    return out


__all__ = ["Stats", "statistics", "normalize", "lookup_tables", "NORM_SCALE", "STATS_SAMPLES"]
