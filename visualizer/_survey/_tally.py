"""Every measure of a survey, per layer and head, added up batch by batch: a :class:`Tally`.

>>> tally = Tally.for_maps(maps, ("entropy", "sink"), geometry)   # shapes from the first batch
>>> tally.add(maps, queries_valid, keys_real)                     # one batch, a block of rows at a time
>>> tally.merge(other); tally.vector()                            # exact merges; one vector to all_reduce

A tally holds one :class:`~visualizer._survey._accumulate.Accumulator` per measure and, for
images with a patch grid, the summed CLS row over the patches per layer and head (the mean CLS
map); no map is kept. Layers are the captured ones, in order (``maps.infos``); a layer with
fewer heads than the most leaves the rest uncounted.
"""

from __future__ import annotations

import numpy as np

from visualizer._blockwise import ROWS
from visualizer._survey._accumulate import Accumulator
from visualizer._survey._measures import CENTRES, Geometry, row_measures

__all__ = ["Tally"]

BINS = 20


class Tally:
    """Accumulators per measure, the CLS map's sums, and the number of inputs counted."""

    def __init__(self, paths: list[str], heads: int, measures, geometry: Geometry | None) -> None:
        self.paths, self.heads, self.measures, self.geometry = (
            list(paths),
            int(heads),
            tuple(measures),
            geometry,
        )
        layers = len(self.paths)
        self.accumulators = {name: Accumulator(layers, heads, BINS, CENTRES[name]) for name in self.measures}
        patches = geometry.rows * geometry.cols if geometry is not None else 0
        self.cls_sum = np.zeros((layers, heads, patches))
        self.cls_count = np.zeros(layers)
        self.inputs = np.zeros(1)

    @classmethod
    def for_maps(cls, maps, measures, geometry: Geometry | None) -> Tally:
        heads = max(int(maps.shape(i)[1]) for i in range(len(maps)))
        return cls([info.path for info in maps.infos], heads, measures, geometry)

    def spec(self) -> dict:
        """What must agree for two tallies to merge."""
        geometry = None if self.geometry is None else vars(self.geometry).copy()
        return {
            "layers": self.paths,
            "heads": self.heads,
            "measures": list(self.measures),
            "geometry": geometry,
        }

    def add(self, maps, queries_valid=None, keys_real=None) -> None:
        """Count one batch's maps, (batch, heads, queries, keys) per layer, ``ROWS`` query rows at a time.

        ``queries_valid`` (batch, queries) marks the real (unpadded) queries, None: all;
        ``keys_real`` (batch,) how many keys are real, None: all.
        """
        import torch

        paths = [info.path for info in maps.infos]
        if paths != self.paths:
            raise ValueError(
                f"survey: this batch captured the layers {paths[:3]}... but the first captured "
                f"{self.paths[:3]}...; "
                "every batch must run the same attention layers"
            )
        batch = None
        for layer in range(len(paths)):
            batch, heads, queries, keys = (int(n) for n in maps.shape(layer))
            if "distance" in self.measures and queries == keys:
                self._check_grid(paths[layer], keys)
            real = keys_real if keys_real is not None else torch.full((batch,), keys)
            for start, block in maps.row_blocks(layer, ROWS):
                block = block.detach()
                measured = row_measures(
                    block, start, self.measures, self.geometry, queries_valid, real, queries == keys
                )
                for name, (values, valid, normalized) in measured.items():
                    self.accumulators[name].add(layer, values, valid, normalized)
                if start == 0 and self._has_cls_map(keys):
                    row = block[:, :, 0, self.geometry.prefix :].double().sum(dim=0)
                    self.cls_sum[layer, :heads] += row.cpu().numpy()
                    self.cls_count[layer] += batch
        if batch is not None:
            self.inputs += batch

    def _check_grid(self, path: str, keys: int) -> None:
        g = self.geometry
        if keys != g.prefix + g.rows * g.cols:
            raise ValueError(
                f"survey(): layer {path!r} has {keys} tokens, not {g.prefix} prefix + {g.rows} x {g.cols} "
                "patches; pass grid=(rows, cols) and prefix_tokens= that fit the images' size"
            )

    def _has_cls_map(self, keys: int) -> bool:
        g = self.geometry
        return g is not None and g.prefix > 0 and keys == g.prefix + g.rows * g.cols

    def merge(self, other: Tally) -> Tally:
        """Add ``other``'s counts into this tally; returns self."""
        if other.spec() != self.spec():
            raise ValueError(
                f"merge(): the surveys differ ({other.spec()} vs {self.spec()}); merge surveys of one model, "
                "the same measures and the same image geometry"
            )
        for name in self.measures:
            self.accumulators[name].merge(other.accumulators[name])
        self.cls_sum += other.cls_sum
        self.cls_count += other.cls_count
        self.inputs += other.inputs
        return self

    def _arrays(self) -> list[np.ndarray]:
        return [self.cls_sum, self.cls_count, self.inputs]

    def vector(self) -> np.ndarray:
        """Every count and sum in one float64 vector (``all_reduce(SUM)`` of it merges the ranks)."""
        parts = [self.accumulators[name].vector() for name in self.measures]
        return np.concatenate(parts + [a.ravel() for a in self._arrays()])

    def load_vector(self, vector: np.ndarray) -> None:
        start = 0
        for name in self.measures:
            acc = self.accumulators[name]
            size = acc.vector().size
            acc.load_vector(vector[start : start + size])
            start += size
        for a in self._arrays():
            a[...] = vector[start : start + a.size].reshape(a.shape)
            start += a.size

    def state(self) -> dict:
        return {
            **self.spec(),
            "accumulators": {name: acc.state() for name, acc in self.accumulators.items()},
            "cls_sum": self.cls_sum.tolist(),
            "cls_count": self.cls_count.tolist(),
            "inputs": float(self.inputs[0]),
        }

    @classmethod
    def from_state(cls, state: dict) -> Tally:
        geometry = None if state["geometry"] is None else Geometry(**state["geometry"])
        tally = cls(state["layers"], state["heads"], state["measures"], geometry)
        tally.accumulators = {name: Accumulator.from_state(s) for name, s in state["accumulators"].items()}
        tally.cls_sum[...] = np.asarray(state["cls_sum"], dtype=np.float64).reshape(tally.cls_sum.shape)
        tally.cls_count[...] = np.asarray(state["cls_count"], dtype=np.float64)
        tally.inputs[...] = state["inputs"]
        return tally
