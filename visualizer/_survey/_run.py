"""``survey()``: stream a dataset through a model and count attention measures per layer and head.

>>> result = survey(vit, "photos/", batch_size=16)                    # every image under photos/
>>> result = survey(bert, "sentences.txt", tokenizer=tokenizer)       # one text per line
>>> result.mean("distance")                                           # (layers, heads)

Under ``torchrun --nproc_per_node=N`` every process runs the same call: each takes its shard
of the inputs and the counts are summed over the processes before the result is made (every
rank gets the same result). See :mod:`visualizer._survey` for the options.
"""

from __future__ import annotations

import contextlib
import sys

from visualizer._survey import _checkpoint, _distributed
from visualizer._survey._decode import ImageBatcher, TextBatcher
from visualizer._survey._inputs import open_source
from visualizer._survey._measures import IMAGE_MEASURES, MEASURES, TEXT_MEASURES, Geometry
from visualizer._survey._result import SurveyResult
from visualizer._survey._tally import Tally
from visualizer._validate import positive_int

__all__ = ["survey"]


def survey(
    model,
    inputs,
    measures=None,
    batch_size: int = 8,
    *,
    kind: str | None = None,
    tokenizer=None,
    max_length: int = 512,
    image_size: int = 224,
    transform=None,
    grid=None,
    prefix_tokens: int | None = None,
    patch_size: float | None = None,
    num_workers: int = 0,
    checkpoint=None,
    checkpoint_every: int = 10,
    device=None,
    progress: bool = False,
    on_batch=None,
) -> SurveyResult:
    """Attention statistics of ``model`` over a whole dataset, per layer and head.

    >>> result = survey(vit, "photos/", batch_size=16, num_workers=2)
    >>> result.mean("distance"), result.std("distance"), result.count("distance")   # (layers, heads)
    >>> survey(bert, ["A cat sat.", "Dogs bark."], tokenizer=tok, measures=["entropy", "previous"])

    ``inputs``: a folder (every file under it that PIL reads, recursively; the others skipped
    and listed), a text file (one text per line), a list or any iterable of images (paths, PIL
    images, RGB arrays, (channels, height, width) tensors) or of texts, or a torch DataLoader
    whose batches go to the model as they are (a pixel tensor, or a dict of model inputs
    whose ``attention_mask`` marks the real tokens). ``kind``: "images" or "texts" (None:
    texts when a ``tokenizer`` is given or a text file is read, else images; pass
    ``kind="texts"`` for a DataLoader of tokenised batches).

    ``measures``: any of ``distance`` (images), ``entropy``, ``sink`` (mass on token 0),
    ``self`` (on the query itself), ``previous`` (on the token before, texts); None: all that
    fit the kind. Each is taken per query row of every head and summed; only real (unpadded)
    text tokens count as queries. Images on a patch grid also get the mean CLS map per layer.
    The patch grid and prefix tokens are what the capture declared for the first layer (the
    grid the model's patch embedding produced for the inputs, registers included), and the
    patch size the input's width in pixels over the grid's columns; ``grid``,
    ``prefix_tokens`` and ``patch_size`` override them. A model whose capture declares no
    grid gets them from those arguments, else, for the distance measure, a square grid after
    one prefix token, distances in patches.

    Memory stays that of one batch: maps are read ``ROWS`` query rows at a time
    (``maps.row_blocks``) and only the counts are kept. ``num_workers`` DataLoader workers
    decode the inputs. ``checkpoint``: a file path; every ``checkpoint_every`` batches the
    counts and the position are written there (atomically, one file per rank), and a call that
    finds one continues from it without counting anything twice. The checkpoint names the
    inputs (a folder's files, a text file, a list of paths; only the count of other lists, and
    nothing of a stream or a DataLoader, which must give the same inputs again). ``device``: where the
    inputs go (None: where the model's parameters are). ``progress``: a progress bar on rank
    0. ``on_batch(done)`` is called after each batch with the number of this rank's batches
    done (a test can interrupt a run from it).
    """
    import torch

    from visualizer import capture_attention

    batch_size = positive_int(batch_size, "survey(): batch_size")
    checkpoint_every = positive_int(checkpoint_every, "survey(): checkpoint_every")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"survey(): num_workers must be an int >= 0, not {num_workers!r}")
    source = open_source(inputs, "texts" if tokenizer is not None and kind is None else kind)
    if source.kind == "texts" and tokenizer is None and source.loader is None:
        raise TypeError("survey(): texts need tokenizer=, e.g. the model's AutoTokenizer")
    chosen = _measures(measures, source.kind)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    rank, world = _distributed.join()
    geometry = None  # read from the first batch's capture (images only)
    batcher = (
        TextBatcher(tokenizer, max_length) if source.kind == "texts" else ImageBatcher(image_size, transform)
    )
    fingerprint = {
        "inputs": source.description,
        "model": type(model).__name__,
        "measures": list(chosen),
        "batch_size": batch_size,
        "world": world,
    }
    path = None if checkpoint is None else _checkpoint.checkpoint_path(checkpoint, rank, world)
    position, tally, skipped = 0, None, []
    if path is not None:
        resumed = _checkpoint.load(path, fingerprint)
        if resumed is not None:
            position, tally, skipped = resumed
    bar = _bar(progress and rank == 0, source, rank, world, batch_size, position)
    model.eval()
    batches = source.batches(batcher, rank, world, batch_size, position, num_workers)
    # One capture for the whole run (finding the attention modules costs ~0.1 s), cleared before each
    # batch; entered at the first batch, so a run with nothing left to do captures nothing.
    with torch.no_grad(), contextlib.ExitStack() as stack:
        if bar is not None:
            stack.callback(bar.close)
        maps = None
        for batch in batches:
            skipped.extend(batch.skipped)
            if batch.count:
                if maps is None:
                    maps = stack.enter_context(capture_attention(model))
                maps.clear()  # the last batch's calls
                _call(model, batch.inputs, device)
                if tally is None:
                    if source.kind == "images":
                        geometry = _geometry(maps, batch.inputs, chosen, grid, prefix_tokens, patch_size)
                    tally = Tally.for_maps(maps, chosen, geometry)
                real = None if batch.queries_valid is None else batch.queries_valid.sum(dim=1)
                tally.add(maps, batch.queries_valid, real)
            position += 1
            if path is not None and position % checkpoint_every == 0:
                _checkpoint.save(path, fingerprint, position, tally, skipped)
            if bar is not None:
                bar.update(batch.count + len(batch.skipped))
            if on_batch is not None:
                on_batch(position)
    if path is not None:
        _checkpoint.save(path, fingerprint, position, tally, skipped)
    tally = _combine(tally)
    skipped = [item for part in _distributed.all_gather(skipped) for item in part]
    if skipped and rank == 0:
        print(f"survey: skipped {len(skipped)} unreadable input(s):", file=sys.stderr)
        for name, reason in skipped:
            print(f"  {name}: {reason}", file=sys.stderr)
    meta = {
        "model": getattr(model, "name_or_path", None) or type(model).__name__,
        "inputs": source.description,
        "options": {
            "batch_size": batch_size,
            "processes": world,
            "max_length": max_length,
            "image_size": image_size if source.kind == "images" else None,
        },
    }
    return SurveyResult(tally, meta, skipped)


def _measures(measures, kind: str) -> tuple[str, ...]:
    if measures is None:
        return IMAGE_MEASURES if kind == "images" else TEXT_MEASURES
    if isinstance(measures, str):
        measures = [measures]
    chosen = tuple(measures)
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"survey(): measures must be distinct names among {list(MEASURES)}, not {list(measures)!r}"
        )
    if "distance" in chosen and kind != "images":
        raise ValueError("survey(): the distance measure is over a patch grid: images only")
    return chosen


def _geometry(maps, inputs, chosen, grid, prefix_tokens, patch_size) -> Geometry | None:
    """The patch grid, prefix tokens and patch size of an image survey: each as given, else what the
    capture declared for the first layer; None where nothing declares or asks for a grid."""
    from visualizer._arrays import image_geometry
    from visualizer._structure import Tokens

    declared = maps.layout(0)
    known = isinstance(declared, Tokens) and declared.grid is not None
    if not known and grid is None and prefix_tokens is None and "distance" not in chosen:
        return None
    tokens = int(maps.shape(0)[-1])
    rows, cols, prefix = image_geometry(tokens, grid, prefix_tokens, declared, "survey(): the patch grid")
    if patch_size is None:
        width = inputs.shape[-1] if known and not isinstance(inputs, dict) else None
        patch_size = width / cols if width else 1.0
    return Geometry(rows, cols, prefix, float(patch_size))


def _call(model, inputs, device) -> None:
    if isinstance(inputs, dict):
        model(**{key: value.to(device) for key, value in inputs.items()})
    else:
        model(inputs.to(device))


def _combine(tally: Tally | None) -> Tally:
    """The tallies of every rank summed (a rank that saw no input adopts the others' layers)."""
    specs = _distributed.all_gather(None if tally is None else tally.spec())
    first = next((spec for spec in specs if spec is not None), None)
    if first is None:
        raise ValueError("survey(): no input could be read; see the skipped inputs listed above")
    if tally is None:
        tally = Tally(
            first["layers"],
            first["heads"],
            first["measures"],
            None if first["geometry"] is None else Geometry(**first["geometry"]),
        )
    tally.load_vector(_distributed.all_sum(tally.vector()))
    return tally


def _bar(show: bool, source, rank: int, world: int, batch_size: int, position: int):
    """A progress bar over this rank's shard (shown on rank 0 only)."""
    if not show:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the models extra
        return None
    total = len(range(rank, len(source.items), world)) if source.items is not None else None
    done = min(position * batch_size, total) if total is not None else 0
    where = f" (rank {rank} of {world})" if world > 1 else ""
    return tqdm(total=total, initial=done, desc=f"survey{where}", unit="input", file=sys.stderr)
