"""Data preprocessing of semantics section 3, in NumPy integers (no floating point).

* centring: x_c = x - 128 (§3.2);
* statistics (§3.3): pi_0 = permutation(N_train) from rng_data = PCG32 seed(s, 1); the statistics set S is
  the first min(stats_samples, N_train) samples in pi_0 order; per channel, with n = |S|*H*W and int64 sums,
  mean_c = tdiv(sum x_c, n) and MAD_c = tdiv(sum |x_c - mean_c|, n), using the truncated mean;
* normalisation (§3.4): x_n = clip(tdiv((x_c - mean_c) * 51, MAD_c), -128, 127) as int8, for the training and
  the test set alike, with the training statistics.

The generated C offers the same normalisation (`<name>_normalize`, constants baked in at compile time,
see `emit.py`); `tests/test_preprocess.py` checks the two bit for bit. The PRNG is the reference's PCG32,
so the statistics sample is the one semantics 2.3 prescribes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import Diagnostic, NitrogenError
from .reference import Pcg32

NORM_SCALE = 51     # semantics 3.4: aims at a standard deviation of about 64 (MAD ~ sigma / 1.25)
STATS_SAMPLES = 25_000


@dataclass(frozen=True, slots=True)
class Stats:
    """Per-channel integer statistics of the training set (semantics 3.3)."""

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


def statistics(train_x: np.ndarray, seed: int, stats_samples: int = STATS_SAMPLES) -> Stats:
    """Semantics 3.3 on uint8 NCHW training images."""
    if train_x.dtype != np.uint8 or train_x.ndim != 4 or len(train_x) == 0:
        raise ValueError(f"statistics need a non-empty uint8 (N, C, H, W) array, got {train_x.dtype} {train_x.shape}")
    order = Pcg32(seed, 1).permutation(len(train_x))
    chosen = train_x[np.asarray(order[:min(stats_samples, len(train_x))], dtype=np.int64)]
    centred = chosen.astype(np.int64) - 128
    n = centred.shape[0] * centred.shape[2] * centred.shape[3]
    sums = centred.sum(axis=(0, 2, 3), dtype=np.int64)
    means = [int(_tdiv(int(s), n)) for s in sums]
    mads = []
    for c, mean in enumerate(means):
        mad = int(_tdiv(int(np.abs(centred[:, c] - mean).sum(dtype=np.int64)), n))
        if mad == 0:
            raise NitrogenError([Diagnostic(
                "E410", f"channel {c} of the training set is constant over the statistics sample (MAD = 0)",
                hint="normalisation divides by the mean absolute deviation (semantics 3.3); check the data")])
        mads.append(mad)
    return Stats(tuple(means), tuple(mads), len(chosen), seed)


def normalize(x: np.ndarray, stats: Stats) -> np.ndarray:
    """Semantics 3.2 and 3.4: uint8 NCHW images -> int8."""
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != len(stats.mean):
        raise ValueError(f"normalize needs uint8 (N, {len(stats.mean)}, H, W) images, got {x.dtype} {x.shape}")
    out = np.empty(x.shape, dtype=np.int8)
    for c, (mean, mad) in enumerate(zip(stats.mean, stats.mad)):
        centred = x[:, c].astype(np.int64) - 128 - mean
        out[:, c] = np.clip(_tdiv(centred * NORM_SCALE, mad), -128, 127).astype(np.int8)
    return out


__all__ = ["Stats", "statistics", "normalize", "NORM_SCALE", "STATS_SAMPLES"]
