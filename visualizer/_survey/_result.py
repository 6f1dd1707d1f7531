"""What a survey returns: per-layer, per-head statistics of each measure, as data, JSON and figures.

>>> result = survey(model, "photos/")
>>> result.mean("distance").shape, result.std("entropy"), result.count("sink")   # (layers, heads) each
>>> result.histogram("sink")                      # (edges (bins + 1,), counts (layers, heads, bins))
>>> result.cls_map().shape                        # (layers, heads, rows, cols): the mean CLS row
>>> result.save("survey.json"); SurveyResult.load("survey.json").merge(other)
>>> result.plot_distance(); result.plot_entropy(); result.plot_sink()

Means and standard deviations are over query rows (every real query of every input counted);
a layer and head where a measure counted nothing is NaN (``null`` in JSON). The JSON keeps the
raw counts and sums too, so a saved survey can be loaded and merged with another.
"""

from __future__ import annotations

import json
import math

import numpy as np

from visualizer._files import write_text
from visualizer._survey._tally import Tally

__all__ = ["SCHEMA", "SCHEMA_VERSION", "SurveyResult"]

SCHEMA = "transformer-visualizer/survey"
SCHEMA_VERSION = 1


class SurveyResult:
    """A survey's counts (a :class:`~visualizer._survey._tally.Tally`), what it read, and what it skipped."""

    def __init__(self, tally: Tally, meta: dict | None = None, skipped=()) -> None:
        self.tally, self.meta = tally, dict(meta or {})
        self.skipped = [(str(path), str(reason)) for path, reason in skipped]

    @property
    def layers(self) -> list[str]:
        """The captured attention layers' paths, in order."""
        return list(self.tally.paths)

    @property
    def heads(self) -> int:
        return self.tally.heads

    @property
    def measures(self) -> tuple[str, ...]:
        return self.tally.measures

    @property
    def inputs(self) -> int:
        """How many inputs were counted (skipped files not included)."""
        return int(self.tally.inputs[0])

    def _accumulator(self, measure: str):
        if measure not in self.tally.accumulators:
            raise KeyError(f"this survey has no measure {measure!r}; it measured {list(self.measures)}")
        return self.tally.accumulators[measure]

    def mean(self, measure: str) -> np.ndarray:
        """(layers, heads): the mean over every counted query row."""
        return self._accumulator(measure).mean()

    def std(self, measure: str) -> np.ndarray:
        """(layers, heads): the standard deviation over the counted query rows."""
        return self._accumulator(measure).std()

    def count(self, measure: str) -> np.ndarray:
        """(layers, heads): how many query rows were counted (int)."""
        return self._accumulator(measure).count.astype(np.int64)

    def histogram(self, measure: str) -> tuple[np.ndarray, np.ndarray]:
        """(bin edges, counts (layers, heads, bins)) of the measure's normalised values in [0, 1]."""
        acc = self._accumulator(measure)
        return np.linspace(0.0, 1.0, acc.bins + 1), acc.histogram.astype(np.int64)

    def cls_map(self) -> np.ndarray | None:
        """(layers, heads, rows, cols): the mean CLS attention over the patches; None without a grid."""
        g = self.tally.geometry
        if g is None or not self.tally.cls_count.any():
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.tally.cls_sum / self.tally.cls_count[:, None, None]
        mean[self.tally.cls_count == 0] = np.nan
        return mean.reshape(len(self.layers), self.heads, g.rows, g.cols)

    def merge(self, other: SurveyResult) -> SurveyResult:
        """One result counting both surveys' inputs (neither is changed)."""
        tally = Tally.from_state(self.tally.state()).merge(other.tally)
        meta = {**self.meta, "inputs": [self.meta.get("inputs"), other.meta.get("inputs")]}
        return SurveyResult(tally, meta, self.skipped + other.skipped)

    def to_dict(self) -> dict:
        results = {}
        for name in self.measures:
            edges, counts = self.histogram(name)
            results[name] = {
                "mean": _plain(self.mean(name)),
                "std": _plain(self.std(name)),
                "count": self.count(name).tolist(),
                "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
            }
        cls = self.cls_map()
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            **self.meta,
            "layers": self.layers,
            "heads": self.heads,
            "measures": list(self.measures),
            "inputs_counted": self.inputs,
            "skipped_count": len(self.skipped),
            "skipped": [{"path": path, "reason": reason} for path, reason in self.skipped],
            "results": results,
            "cls_map": None if cls is None else _plain(cls),
            "tally": self.tally.state(),
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def save(self, path) -> None:
        """Write :meth:`to_json` to ``path``, atomically."""
        write_text(path, self.to_json())

    @classmethod
    def from_json(cls, text: str) -> SurveyResult:
        data = json.loads(text)
        if data.get("schema") != SCHEMA:
            raise ValueError(f"not a survey: its schema is {data.get('schema')!r}, not {SCHEMA!r}")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"survey schema version {data.get('schema_version')} is not {SCHEMA_VERSION}")
        meta = {k: data[k] for k in ("model", "inputs", "options") if k in data}
        skipped = [(item["path"], item["reason"]) for item in data["skipped"]]
        return cls(Tally.from_state(data["tally"]), meta, skipped)

    @classmethod
    def load(cls, path) -> SurveyResult:
        with open(path, encoding="utf-8") as handle:
            return cls.from_json(handle.read())

    def plot_distance(self, **options):
        """Mean attention distance of every head against depth (ViT paper, Fig. 7); a matplotlib Figure."""
        from visualizer._survey._figures import plot_distance

        return plot_distance(self, **options)

    def plot_entropy(self, **options):
        """Mean entropy per layer and head as a heatmap; a matplotlib Figure."""
        from visualizer._survey._figures import plot_entropy

        return plot_entropy(self, **options)

    def plot_sink(self, **options):
        """Mass on the first (CLS) token per layer: every head and their mean; a matplotlib Figure."""
        from visualizer._survey._figures import plot_sink

        return plot_sink(self, **options)

    def plot_cls_maps(self, **options):
        """The mean CLS map per layer (mean of heads); a matplotlib Figure."""
        from visualizer._survey._figures import plot_cls_maps

        return plot_cls_maps(self, **options)

    def __repr__(self) -> str:
        return (
            f"SurveyResult({self.inputs} inputs, {len(self.layers)} layers x {self.heads} heads, "
            f"measures {list(self.measures)}, {len(self.skipped)} skipped)"
        )


def _plain(array: np.ndarray):
    """Nested lists, NaN and inf as None (JSON has neither)."""
    return [_plain(a) for a in array] if array.ndim else (float(array) if math.isfinite(array) else None)
