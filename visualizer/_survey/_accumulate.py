"""Sums that merge exactly however the data are split: counts, sums, sums of squares, histograms.

>>> acc = Accumulator(layers=12, heads=6, bins=20)
>>> acc.add(layer, values, valid)          # values: (batch, heads, rows) per query row, valid: same
>>> acc.merge(other)                        # the two runs' data, as one run would have counted them
>>> acc.mean(), acc.std()                   # (layers, heads): NaN where nothing was counted

Everything is float64 (counts too: exact up to 2**53), so a merge is plain addition and a
distributed reduction is one ``all_reduce(SUM)`` of :meth:`Accumulator.vector`. Sums differ
between splits only by float64 rounding (about 1e-16 relative), far below the float32 the maps
are computed in. The variance is ``E[(x - c)^2] - (E[x] - c)^2`` about a fixed centre ``c``
(the middle of the measure's range), which keeps it stable for the bounded values measured
here. Histograms count each value of ``normalized`` (clipped to [0, 1]) in ``bins`` equal bins.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Accumulator"]


class Accumulator:
    """Per layer and head: count, sum, sum of squares (about ``centre``) and a histogram."""

    FIELDS = ("count", "sum", "squares", "histogram")

    def __init__(self, layers: int, heads: int, bins: int = 20, centre: float = 0.0) -> None:
        self.layers, self.heads, self.bins, self.centre = int(layers), int(heads), int(bins), float(centre)
        self.count = np.zeros((layers, heads))
        self.sum = np.zeros((layers, heads))
        self.squares = np.zeros((layers, heads))
        self.histogram = np.zeros((layers, heads, bins))

    def add(self, layer: int, values, valid, normalized=None) -> None:
        """Count ``values`` (batch, heads, rows) where ``valid`` is true, into ``layer``.

        ``values`` and ``valid`` are torch tensors or numpy arrays of one shape; ``normalized``
        (the same shape, in [0, 1]) is what the histogram counts, ``values`` if None.
        """
        values, valid = _numpy(values), _numpy(valid).astype(bool)
        normalized = values if normalized is None else _numpy(normalized)
        valid = valid & np.isfinite(values)
        heads = values.shape[1]
        weight = valid.astype(np.float64)
        shifted = np.where(valid, values - self.centre, 0.0)
        self.count[layer, :heads] += weight.sum(axis=(0, 2))
        self.sum[layer, :heads] += shifted.sum(axis=(0, 2))
        self.squares[layer, :heads] += np.square(shifted).sum(axis=(0, 2))
        places = np.clip(np.nan_to_num(normalized) * self.bins, 0, self.bins - 1).astype(np.int64)
        head_index = np.broadcast_to(np.arange(heads)[None, :, None], values.shape)
        flat = (head_index * self.bins + places)[valid]
        counted = np.bincount(flat, minlength=heads * self.bins)
        self.histogram[layer, :heads] += counted.reshape(heads, self.bins)

    def merge(self, other: Accumulator) -> Accumulator:
        """Add ``other``'s data (same layers, heads, bins and centre) into this one; returns self."""
        if (self.layers, self.heads, self.bins, self.centre) != (
            other.layers,
            other.heads,
            other.bins,
            other.centre,
        ):
            raise ValueError(
                "merge(): the accumulators differ in layers, heads, bins or centre "
                f"({self.layers}, {self.heads}, {self.bins}, {self.centre}) vs "
                f"({other.layers}, {other.heads}, {other.bins}, {other.centre}); merge surveys of one model "
                "and the same measures"
            )
        for name in self.FIELDS:
            getattr(self, name).__iadd__(getattr(other, name))
        return self

    def vector(self) -> np.ndarray:
        """Every field, flattened into one float64 vector (for ``all_reduce``)."""
        return np.concatenate([getattr(self, name).ravel() for name in self.FIELDS])

    def load_vector(self, vector: np.ndarray) -> None:
        """The inverse of :meth:`vector`."""
        start = 0
        for name in self.FIELDS:
            field = getattr(self, name)
            field[...] = np.asarray(vector[start : start + field.size]).reshape(field.shape)
            start += field.size

    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum / self.count + self.centre, np.nan)

    def std(self) -> np.ndarray:
        """The population standard deviation over the values counted."""
        with np.errstate(invalid="ignore", divide="ignore"):
            shifted_mean = self.sum / self.count
            variance = np.maximum(self.squares / self.count - shifted_mean**2, 0.0)
            return np.where(self.count > 0, np.sqrt(variance), np.nan)

    def state(self) -> dict:
        """Plain data (for JSON and checkpoints)."""
        return {
            "layers": self.layers,
            "heads": self.heads,
            "bins": self.bins,
            "centre": self.centre,
            **{name: getattr(self, name).tolist() for name in self.FIELDS},
        }

    @classmethod
    def from_state(cls, state: dict) -> Accumulator:
        acc = cls(state["layers"], state["heads"], state["bins"], state["centre"])
        for name in cls.FIELDS:
            getattr(acc, name)[...] = np.asarray(state[name], dtype=np.float64)
        return acc


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach()
        if value.is_floating_point():
            value = value.double()
        value = value.cpu().numpy()
    return np.asarray(value, dtype=np.float64) if np.asarray(value).dtype != bool else np.asarray(value)
