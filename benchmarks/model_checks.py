"""Before timing: prove that every variant computes the model and that every capture captured.

    >>> check_variants(config, variants)     # one forward each; raises BenchmarkError on any miss

A capture that silently records nothing would be timed as a cheap no-op. So each
capturing variant must hand back ``config.layers`` maps, each of ``config.map_shape``
(batch, heads, queries, keys), and, when it runs the same model, agree with the baseline's
output, and (same weights) with the get_local maps of the first and last layer.
"""

from __future__ import annotations

__all__ = ["BenchmarkError", "check_variants"]

OUTPUT_TOLERANCE = 1e-3  # eager and fused kernels differ by float rounding (~1e-6)
MAP_TOLERANCE = 1e-4


class BenchmarkError(RuntimeError):
    """A variant did not do what the benchmark claims to time."""


def check_variants(config, variants: list) -> None:
    """Run each variant once (this also warms it up); raise if one computes or captures the wrong thing."""
    reference_output, reference_maps = None, None
    for variant in variants:
        output, maps = _run_once(variant)
        where = f"{config.id}, variant {variant.key!r}"
        if variant.key == "baseline":
            reference_output = output
        elif variant.same_model:
            message = f"{where}: its output differs from the baseline's"
            _close(output, reference_output, OUTPUT_TOLERANCE, message)
        if variant.key in ("baseline", "eager"):
            if maps is not None:
                raise BenchmarkError(f"{where} should capture nothing, yet it returned maps")
            continue
        _check_maps(maps, config, where)
        if variant.key == "get_local":
            reference_maps = {0: maps[0], -1: maps[-1]}  # not every layer: BERT-base's are 1.2 GB at batch 8
        elif variant.same_weights and reference_maps is not None:
            for layer in reference_maps:
                message = f"{where}: its layer {layer} map differs from get_local's"
                _close(maps[layer], reference_maps[layer], MAP_TOLERANCE, message)


def _run_once(variant):
    variant.enter()
    try:
        output = variant.step()
        maps = variant.maps()
        variant.reset()
    finally:
        variant.leave()
    return output, maps


def _check_maps(maps, config, where: str) -> None:
    if not maps or len(maps) != config.layers:
        raise BenchmarkError(
            f"{where} captured {len(maps or [])} maps, expected one per layer: {config.layers}. "
            "Timing it would time a capture that does not capture."
        )
    shapes = {tuple(m.shape) for m in maps}
    if shapes != {config.map_shape}:
        raise BenchmarkError(f"{where} captured maps of shapes {sorted(shapes)}, expected {config.map_shape}")


def _close(value, reference, tolerance: float, message: str) -> None:
    import torch

    value, reference = torch.as_tensor(value), torch.as_tensor(reference)
    if value.shape != reference.shape:
        raise BenchmarkError(f"{message}: shape {tuple(value.shape)}, expected {tuple(reference.shape)}")
    gap = (value - reference).abs().max().item()
    if not gap <= tolerance:
        raise BenchmarkError(f"{message} by {gap:.3g} (tolerance {tolerance:g})")
