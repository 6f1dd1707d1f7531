"""What the survey measures on each query row of each head, a block of rows at a time.

>>> row_measures(block, start, ("entropy", "sink"), geometry, queries_valid, keys_real, square=True)
{'entropy': (values, valid, normalized), 'sink': (...)}

``block`` is (batch, heads, rows, keys), the query rows ``start..start+rows`` of one layer
(``maps.row_blocks``). Each measure gives, per (batch, head, row), a value, whether it counts,
and the value mapped into [0, 1] for the histogram:

- ``distance``: the attention-weighted mean distance from the query patch to the key
  patches, over the patch grid (rows and columns of patch centres, times ``patch_size``), the
  weights renormalised over the patches; queries are the patches (not the prefix tokens), as
  :func:`visualizer.analysis.mean_attention_distance` defines it. Histogram: / the grid's diagonal.
- ``entropy``: ``-sum p log p`` over the keys, in nats. Histogram: / log(real keys).
- ``sink``: the weight on key 0 (CLS, or a text's first token).
- ``self``: the weight on the query's own position (square maps only).
- ``previous``: the weight on the position before the query (square maps; not query 0).

Only real queries count: ``queries_valid`` (batch, queries) is the attention mask of a padded
text batch (None: every query). Torch only; sums are taken in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["IMAGE_MEASURES", "MEASURES", "TEXT_MEASURES", "Geometry", "row_measures"]

MEASURES = ("distance", "entropy", "sink", "self", "previous")
IMAGE_MEASURES = ("distance", "entropy", "sink", "self")
TEXT_MEASURES = ("entropy", "sink", "self", "previous")
#: The centre each measure's squares are taken about (the middle of its usual range).
CENTRES = {"distance": 0.0, "entropy": 0.0, "sink": 0.5, "self": 0.5, "previous": 0.5}


@dataclass(frozen=True)
class Geometry:
    """The patch grid of image tokens: ``prefix`` tokens (CLS, registers), then rows x cols patches."""

    rows: int
    cols: int
    prefix: int
    patch_size: float = 1.0

    @property
    def diagonal(self) -> float:
        return max(math.hypot(self.rows - 1, self.cols - 1), 1e-12) * self.patch_size


def row_measures(
    block, start: int, measures, geometry: Geometry | None, queries_valid, keys_real, square: bool
) -> dict:
    """{measure: (values, valid, normalized)}, each (batch, heads, rows); see the module docstring.

    ``keys_real`` (batch,) is how many keys are real (not padding), for the entropy's histogram;
    ``square``: the layer's map has as many queries as keys (self-attention).
    """
    import torch

    a = block if block.dtype in (torch.float32, torch.float64) else block.float()
    batch, heads, rows, keys = a.shape
    device = a.device
    q = torch.arange(start, start + rows, device=device)
    if queries_valid is None:
        valid = torch.ones(batch, 1, rows, dtype=torch.bool, device=device)
    else:
        valid = queries_valid[:, start : start + rows].to(device=device, dtype=torch.bool)[:, None, :]
    valid = valid.expand(batch, heads, rows)
    out = {}
    for name in measures:
        if name == "entropy":
            plogp = a * torch.log(torch.where(a > 0, a, torch.ones((), dtype=a.dtype, device=device)))
            values = -plogp.sum(dim=-1, dtype=torch.float64)
            scale = torch.log(keys_real.to(device=device, dtype=torch.float64).clamp(min=2))[:, None, None]
            out[name] = (values, valid, values / scale)
        elif name == "sink":
            values = a[..., 0].double()
            out[name] = (values, valid, values)
        elif name == "self":
            index = q.clamp(max=keys - 1).view(1, 1, rows, 1).expand(batch, heads, rows, 1)
            values = a.gather(-1, index)[..., 0].double()
            out[name] = (values, valid & square & (q < keys), values)
        elif name == "previous":
            index = (q - 1).clamp(min=0, max=keys - 1).view(1, 1, rows, 1).expand(batch, heads, rows, 1)
            values = a.gather(-1, index)[..., 0].double()
            before = (q >= 1) & (q - 1 < keys)
            if queries_valid is not None:
                previous = queries_valid.to(device=device, dtype=torch.bool)[:, (q - 1).clamp(min=0)]
                before = before[None, None, :] & previous[:, None, :]
            out[name] = (values, valid & square & before, values)
        elif name == "distance":
            out[name] = _distance(a, start, geometry, valid)
        else:  # pragma: no cover - names are checked by the caller
            raise ValueError(f"unknown measure {name!r}")
    return out


def _distance(a, start: int, geometry: Geometry, valid):
    import torch

    batch, heads, rows, keys = a.shape
    prefix, cols = geometry.prefix, geometry.cols
    device = a.device
    q = torch.arange(start, start + rows, device=device) - prefix  # the query's patch, or < 0
    patches = torch.arange(keys - prefix, device=device)
    qp = q.clamp(min=0)
    distance = torch.hypot(
        (qp[:, None] // cols - patches[None, :] // cols).double(),
        (qp[:, None] % cols - patches[None, :] % cols).double(),
    ) * float(geometry.patch_size)
    weights = a[..., prefix:]
    mass = weights.sum(dim=-1, dtype=torch.float64)
    weighted = (weights.double() * distance).sum(dim=-1)
    values = weighted / torch.where(mass > 0, mass, torch.ones_like(mass))
    counted = valid & (mass > 0) & (q >= 0)[None, None, :]
    return values, counted, values / geometry.diagonal
