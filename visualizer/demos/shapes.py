"""Shapes: a tiny ViT that names the shape of the one red object, so the evidence is known pixel for pixel.

>>> from visualizer.demos.shapes import load_shapes_demo
>>> demo = load_shapes_demo(seed=0)              # trained once (40-90 s on one core), then cached
>>> images, labels, masks = demo.images(256)     # (256, 3, 48, 48) float32, (256,) int64, (256, 48, 48) bool
>>> demo.classes[int(labels[0])]
'square'
>>> demo.accuracy()                              # held out: 0.990-0.999 for seeds 0-3
0.990...
>>> demo.patch_masks(masks).shape                # (256, 6, 6): the patches that hold part of the object
(256, 6, 6)
>>> from visualizer import explain
>>> relevance = explain(demo.model, images[labels == 0], target=0)      # the circles' logit
>>> demo.ground_truth_scores("attention_grad")   # pointing game, segmentation scores, faithfulness AUCs
{'pointing_game': 1.0, 'pixel_accuracy': 0.88..., 'miou': 0.62..., 'map': 0.98..., ...}

**The task.** A 48 x 48 RGB image holds a grey background (a random level per image) with
pixel noise, one to four *distractors* and one *target*. Every object is a circle, a
square, an upward triangle or a plus-shaped cross (:data:`CLASSES`), of random size and
place. The target is red; the distractors are green, blue, yellow, cyan or white, their
shapes drawn uniformly and independently of the label, and kept clear of the target's box.
The label is the target's shape: only the target's pixels can tell it, so a model that
classifies well must read them, and an explanation should point at them.

**The evidence.** :meth:`ShapesDemo.images` returns each target's pixel mask, exact: the
target is drawn last, over the background only (never over a distractor), and the noise
is added after, so the mask is exactly the set of pixels that change when the target is
left out (``images(..., with_target=False)`` draws the same scenes without it).
:meth:`ShapesDemo.patch_masks` turns it into the (rows, cols) patch grid of the model's
tokens.

**The model.** timm's ``VisionTransformer``, built here from arguments with a random
initialisation (no pretrained weights): 8 x 8 patches (a 6 x 6 grid), a class token whose
output is classified (``global_pool="token"``), 3 blocks of 4 heads, width 64, MLP ratio 2,
no dropout. It is trained with AdamW on a fresh batch of 64 images every step, 1,200 steps:
37 s on one thread of an idle core (75-90 s on a busy shared one), held-out accuracy 99.0-99.9 % (seeds 0-3,
1,024 images; the tests ask for at least 95 %). Objects of radius 5 and up, or 1,000 steps,
or no gradient clipping left one seed in four at 85-92 %.

**Scoring explanations.** :meth:`ShapesDemo.ground_truth_scores` runs one
:func:`visualizer.explain` method (or a random relevance) on held-out images and scores it
against the masks: the pointing game on the patch grid, Chefer et al.'s segmentation
scores on the pixels (:mod:`visualizer.demos._truth`) and :func:`visualizer.faithfulness`'s
AUCs.

Reproducibility and cache: as the induction demo (:mod:`visualizer.demos.induction`).
Training runs on one intra-op thread by default; the weights are drawn under
``torch.random.fork_rng`` from ``torch.manual_seed(seed)`` and the batches from a
``torch.Generator`` seeded with ``seed``. :func:`load_shapes_demo` keeps the weights in the
user cache (``$VISUALIZER_CACHE``), named after a hash of the settings, with the settings,
the torch and timm versions and the sha256 of the tensors in the file's metadata; a file
that cannot be used is trained again and replaced, with a ``CaptureWarning``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from visualizer.demos._cached import DemoCache
from visualizer.demos._training import (
    check_int,
    check_ints,
    check_method,
    check_positive_numbers,
    check_run,
    evaluating,
    intra_op_threads,
)

__all__ = ["CLASSES", "ShapesDemo", "ShapesSettings", "load_shapes_demo", "train_shapes"]

#: The shape classes, in label order.
CLASSES = ("circle", "square", "triangle", "cross")
# The held-out stream is the same for every training seed, so models trained with
# different seeds are compared on the same images.
HELD_OUT_SEED = 2_718_281
#: Bump when training or the images change, so that caches written by older code are not reused.
TRAINER_VERSION = "1"
#: The distractors' colours (RGB, before a jitter of +-0.05): green, blue, yellow, cyan, white.
#: Each differs from the red target by at least 0.5 in green or blue.
DISTRACTOR_COLOURS = (
    (0.1, 0.8, 0.2),
    (0.15, 0.35, 1.0),
    (0.95, 0.9, 0.15),
    (0.2, 0.9, 0.9),
    (0.95, 0.95, 0.95),
)
#: The margin in pixels kept between the target's box and a distractor's.
CLEARANCE = 2.0
#: Candidate places tried per distractor; one that finds no clear place is left out.
CANDIDATES = 4
#: The standard deviation of the pixel noise.
NOISE = 0.05
#: The scores :meth:`ShapesDemo.ground_truth_scores` returns, in order.
SCORE_NAMES = (
    "pointing_game",
    "pixel_accuracy",
    "miou",
    "map",
    "auc_most_relevant_first",
    "auc_least_relevant_first",
    "auc_random",
    "auc_difference",
)


@dataclasses.dataclass(frozen=True)
class ShapesSettings:
    """The hyper-parameters of one training run and of its images; ``demo.settings``. Checked when built.

    >>> ShapesSettings().grid                               # image_size // patch_size, twice
    (6, 6)

    - ``image_size``, ``patch_size``: square images and patches; the size must be a multiple
      of the patch.
    - ``min_radius``, ``max_radius``: an object's radius in pixels, drawn uniformly (the
      circle's radius; the square's half side is 0.8 of it, the cross's arm length all of it).
    - ``max_distractors``: each image holds 1 to this many, drawn uniformly (fewer when no
      clear place is found).
    - ``embed_dim``, ``depth``, ``heads``, ``mlp_ratio``: the ``VisionTransformer``'s.
    """

    seed: int = 0
    steps: int = 1200
    image_size: int = 48
    patch_size: int = 8
    min_radius: float = 6.0
    max_radius: float = 10.0
    max_distractors: int = 4
    embed_dim: int = 64
    depth: int = 3
    heads: int = 4
    mlp_ratio: float = 2.0
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    clip_norm: float = 1.0

    def __post_init__(self) -> None:
        check_ints(
            self,
            {
                "seed": None,
                "steps": 0,
                "image_size": 8,
                "patch_size": 1,
                "max_distractors": 0,
                "embed_dim": 1,
                "depth": 1,
                "heads": 1,
                "batch_size": 1,
            },
        )
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size}): "
                "the patches tile the image"
            )
        if self.embed_dim % self.heads:
            raise ValueError(
                f"embed_dim ({self.embed_dim}) must be divisible by heads ({self.heads}): "
                "each head gets embed_dim // heads dimensions"
            )
        check_positive_numbers(self, ["min_radius", "max_radius", "mlp_ratio", "lr", "clip_norm"])
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)):
            raise ValueError(f"weight_decay must be a number, got {self.weight_decay!r}")
        if not 0 <= self.weight_decay < math.inf:
            raise ValueError(f"weight_decay must be finite and at least 0, got {self.weight_decay!r}")
        if self.min_radius < 3:
            raise ValueError(
                f"min_radius must be at least 3 pixels, or the shapes look alike, got {self.min_radius}"
            )
        if self.max_radius < self.min_radius:
            raise ValueError(
                f"max_radius ({self.max_radius}) must be at least min_radius ({self.min_radius})"
            )
        if 2 * self.max_radius > self.image_size:
            raise ValueError(
                f"max_radius ({self.max_radius}) must be at most image_size / 2 ({self.image_size / 2}): "
                "every object lies wholly inside the image"
            )

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid (rows, cols), the model's tokens after the class token."""
        side = self.image_size // self.patch_size
        return side, side

    def model(self):
        """A freshly initialised timm ``VisionTransformer`` of these settings (from the global RNG)."""
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(
            img_size=self.image_size,
            patch_size=self.patch_size,
            num_classes=len(CLASSES),
            global_pool="token",
            embed_dim=self.embed_dim,
            depth=self.depth,
            num_heads=self.heads,
            mlp_ratio=self.mlp_ratio,
            class_token=True,
        )


@dataclasses.dataclass
class ShapesDemo:
    """A trained shapes model with its settings; made by ``train_shapes`` or ``load_shapes_demo``.

    - ``model``: the timm ``VisionTransformer``, in eval mode.
    - ``settings``: the ``ShapesSettings`` it was trained with.
    - ``losses``: the training loss after each step, ``steps`` floats (kept in the cache too).
    - ``seconds``: the training time in seconds (as measured when it was trained).
    - ``threads``: the torch intra-op thread count it was trained with.
    - ``path``: the cache file it was read from or written to, or None.
    """

    model: torch.nn.Module
    settings: ShapesSettings
    losses: list[float]
    seconds: float
    threads: int
    path: Path | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        """The shape names, in label order: ``("circle", "square", "triangle", "cross")``."""
        return CLASSES

    def images(self, count: int = 256, seed: int = HELD_OUT_SEED, *, with_target: bool = True):
        """``(images, labels, masks)``: (count, 3, H, W) float32, (count,) int64, (count, H, W) bool.

        ``masks`` is True exactly on the target's pixels. The same scenes for the same
        ``seed``; the default seed is a stream training never reads. ``with_target=False``
        draws the same scenes, noise included, without the target (the labels and masks
        still say what it would have been): the pixels that differ are the mask.

        >>> images, labels, masks = demo.images(2, seed=1)
        >>> bool(((images != demo.images(2, seed=1, with_target=False)[0]).any(1) == masks).all())
        True
        """
        count = check_int(count, "count", 1)
        check_int(seed, "seed")
        if not isinstance(with_target, bool):
            raise TypeError(f"with_target must be True or False, got {with_target!r}")
        generator = torch.Generator().manual_seed(int(seed))
        return draw_images(self.settings, count, generator, with_target=with_target)

    def accuracy(self, count: int = 1024, seed: int = HELD_OUT_SEED) -> float:
        """The share of ``images(count, seed)`` whose shape the model names right."""
        images, labels, _ = self.images(count, seed)
        return float((self.predict(images) == labels).float().mean())

    def predict(self, images) -> torch.Tensor:
        """The predicted labels of (N, 3, H, W) images: (N,) int64, in chunks of 256."""
        images = self._check_images(images)
        with evaluating(self.model):
            return torch.cat([self.model(chunk).argmax(-1) for chunk in images.split(256)])

    def patch_masks(self, masks, coverage: float = 0.0) -> np.ndarray:
        """The (N, rows, cols) bool patch grid of (N, H, W) pixel masks: True where a patch holds evidence.

        A patch counts as evidence when more than ``coverage`` of its pixels lie in the
        mask: by default, when it holds any pixel of the target (its token then sees part of
        it). ``coverage=0.5`` keeps the patches mostly covered.

        >>> demo.patch_masks(np.pad(np.ones((1, 2, 2), bool), ((0, 0), (7, 39), (7, 39))))[0, :2, :2]
        array([[ True,  True],
               [ True,  True]])
        """
        if isinstance(masks, torch.Tensor):
            masks = masks.detach().cpu().numpy()
        masks = np.asarray(masks)
        size, patch = self.settings.image_size, self.settings.patch_size
        if masks.dtype != bool:
            raise TypeError(
                f"masks must be a boolean array (the masks of demo.images), got dtype {masks.dtype}"
            )
        if masks.ndim != 3 or masks.shape[1:] != (size, size):
            raise ValueError(
                f"masks must have shape (N, {size}, {size}) (demo.images' masks), got {masks.shape}"
            )
        if isinstance(coverage, bool) or not isinstance(coverage, (int, float)) or not 0 <= coverage < 1:
            raise ValueError(
                f"coverage must be a share from 0 (any pixel) up to, not including, 1, got {coverage!r}"
            )
        rows, cols = self.settings.grid
        share = masks.reshape(len(masks), rows, patch, cols, patch).mean(axis=(2, 4))
        return share > coverage

    def pixel_scores(self, patch_scores) -> np.ndarray:
        """(N, rows, cols) patch relevance upsampled to (N, H, W) pixels, bilinearly, as Chefer et al. do.

        ``torch.nn.functional.interpolate(..., scale_factor=patch_size, mode="bilinear")``
        (``align_corners=False``): each patch's score sits at its centre and blends linearly
        into its neighbours'; the border patches' scores extend to the edge.
        """
        rows, cols = self.settings.grid
        scores = torch.as_tensor(np.asarray(patch_scores), dtype=torch.float32)
        if scores.dim() != 3 or tuple(scores.shape[1:]) != (rows, cols):
            raise ValueError(f"patch_scores must have shape (N, {rows}, {cols}), got {tuple(scores.shape)}")
        upsampled = torch.nn.functional.interpolate(
            scores[:, None], scale_factor=self.settings.patch_size, mode="bilinear", align_corners=False
        )
        return upsampled[:, 0].numpy()

    def ground_truth_scores(
        self, method: str, count: int = 256, *, seed: int = HELD_OUT_SEED
    ) -> dict[str, float]:
        """How well ``method`` finds the target on ``images(count, seed)``: a dict of :data:`SCORE_NAMES`.

        >>> demo.ground_truth_scores("attention_grad")["pointing_game"]
        1.0

        ``method``: one of :data:`visualizer.relevance.METHODS`, or ``"random"`` (uniform
        random scores, the chance level). Each image is explained for its true label's
        logit, from the class token; the class token's score is left out of everything.

        - ``pointing_game``: on the patch grid (:meth:`patch_masks`, any pixel of the target);
        - ``pixel_accuracy``, ``miou``, ``map``: Chefer et al.'s segmentation scores
          (:func:`visualizer.demos._truth.segmentation_scores`) of the patch scores
          upsampled to pixels (:meth:`pixel_scores`) against the pixel masks;
        - ``auc_most_relevant_first``, ``auc_least_relevant_first``, ``auc_random``: the
          mean over images of :func:`visualizer.faithfulness`'s AUCs (10 steps, removed
          patches filled with the image's mean patch), the target logit against the share of
          patches removed; ``auc_difference``: least- minus most-relevant-first: higher is
          more faithful.
        """
        from visualizer.demos._truth import pointing_game, segmentation_scores

        method = check_method(method)
        images, labels, masks = self.images(count, seed)
        patches, aucs = self._explained(images, labels, method)
        pixels = self.pixel_scores(patches)
        scores = {"pointing_game": pointing_game(patches, self.patch_masks(masks))}
        scores.update(segmentation_scores(pixels, masks.numpy()))
        for order in ("most_relevant_first", "least_relevant_first", "random"):
            scores[f"auc_{order}"] = float(aucs[order].mean())
        scores["auc_difference"] = scores["auc_least_relevant_first"] - scores["auc_most_relevant_first"]
        return {name: scores[name] for name in SCORE_NAMES}

    def _explained(self, images, labels, method: str, chunk: int = 64):
        """(N, rows, cols) patch scores and faithfulness AUCs {order: (N,)}, explained per label in chunks."""
        from visualizer.relevance import explain, faithfulness

        rows, cols = self.settings.grid
        patches = np.zeros((len(images), rows, cols), dtype=np.float32)
        aucs = {
            order: np.zeros(len(images))
            for order in ("most_relevant_first", "least_relevant_first", "random")
        }
        random = torch.Generator().manual_seed(0)
        for label in range(len(CLASSES)):
            for indices in torch.nonzero(labels == label).flatten().split(chunk):
                batch = images[indices]
                if method == "random":
                    # Rollout's result (the cheapest) for its layout, its scores replaced by noise.
                    explained = explain(self.model, batch, label, method="rollout")
                    noise = torch.rand(explained.scores.shape, generator=random)
                    explained = dataclasses.replace(explained, scores=noise, method="random")
                else:
                    explained = explain(self.model, batch, label, method=method)
                grid = np.stack([explained.patches(item) for item in range(len(indices))])
                check = faithfulness(self.model, batch, explained, label)
                patches[indices.numpy()] = grid
                for order in aucs:
                    aucs[order][indices.numpy()] = check.auc[order]
        return patches, aucs

    def _check_images(self, images) -> torch.Tensor:
        size = self.settings.image_size
        if not isinstance(images, torch.Tensor) or not images.is_floating_point():
            kind = f"a {images.dtype} tensor" if isinstance(images, torch.Tensor) else type(images).__name__
            raise TypeError(
                f"images must be a float torch tensor, got {kind}; make some with demo.images(count)"
            )
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, size, size) or not len(images):
            raise ValueError(
                f"images must have shape (N, 3, {size}, {size}) with N >= 1, got {tuple(images.shape)}"
                + ("; for one image pass x[None]" if images.dim() == 3 else "")
            )
        return images


def draw_images(
    settings: ShapesSettings, count: int, generator: torch.Generator, *, with_target: bool = True
):
    """``count`` scenes drawn from ``generator``: ``(images, labels, masks)`` as :meth:`ShapesDemo.images`.

    The random draws do not depend on ``with_target``, so the same generator state gives the
    same scenes with and without the target.
    """
    s, n, d = settings, count, settings.max_distractors
    size = s.image_size

    def uniform(low, high, *shape):
        return low + (high - low) * torch.rand(*shape, generator=generator)

    labels = torch.randint(0, len(CLASSES), (n,), generator=generator)
    radius = uniform(s.min_radius, s.max_radius, n)
    x = radius + (size - 2 * radius) * torch.rand(n, generator=generator)
    y = radius + (size - 2 * radius) * torch.rand(n, generator=generator)
    # Distractors: CANDIDATES places each; the first clear of the target's box is used.
    kinds = torch.randint(0, len(CLASSES), (n, d, CANDIDATES), generator=generator)
    radii = uniform(s.min_radius, s.max_radius, n, d, CANDIDATES)
    xs = radii + (size - 2 * radii) * torch.rand(n, d, CANDIDATES, generator=generator)
    ys = radii + (size - 2 * radii) * torch.rand(n, d, CANDIDATES, generator=generator)
    reach = radii + radius[:, None, None] + CLEARANCE
    clear = ((xs - x[:, None, None]).abs() > reach) | ((ys - y[:, None, None]).abs() > reach)
    wanted = torch.arange(d)[None] < torch.randint(1, max(d, 1) + 1, (n, 1), generator=generator)
    first = clear.int().argmax(-1, keepdim=True)  # the first clear candidate (0 if none)

    def chosen(values):
        return values.gather(-1, first).squeeze(-1)

    present = clear.any(-1) & wanted  # (n, d)
    colours = torch.tensor(DISTRACTOR_COLOURS)[
        torch.randint(0, len(DISTRACTOR_COLOURS), (n, d), generator=generator)
    ]
    colours = (colours + uniform(-0.05, 0.05, n, d, 3)).clamp(0, 1)
    red = torch.stack([uniform(0.8, 1.0, n), uniform(0.0, 0.25, n), uniform(0.0, 0.25, n)], dim=1)
    level = uniform(0.1, 0.5, n, 1, 1, 1)
    noise = NOISE * torch.randn(n, 3, size, size, generator=generator)

    images = level.expand(n, 3, size, size).clone()
    if d:
        shapes = (
            shape_masks(chosen(kinds), chosen(xs), chosen(ys), chosen(radii), size) & present[..., None, None]
        )
        for slot in range(d):
            images = torch.where(shapes[:, slot, None], colours[:, slot, :, None, None], images)
    masks = shape_masks(labels, x, y, radius, size)
    if with_target:
        images = torch.where(masks[:, None], red[:, :, None, None], images)
    return images + noise, labels, masks


def shape_masks(kinds, x, y, radius, size: int) -> torch.Tensor:
    """The pixels of shapes (``kinds`` indexes :data:`CLASSES`) centred at (x, y): (..., size, size) bool.

    ``kinds``, ``x``, ``y``, ``radius``: tensors of one shape (...). A pixel belongs to a
    shape when its centre (``column + 0.5``, ``row + 0.5``) lies inside:

    - circle: within ``radius`` of the centre;
    - square: half side ``0.8 * radius``;
    - triangle: apex ``radius`` above the centre, base ``0.8 * radius`` below it, half width
      at the base ``0.99 * radius``;
    - cross: two bars of half length ``radius`` and half width ``radius / 3``.
    """
    batch_shape = kinds.shape
    kinds, x, y, radius = (t.reshape(-1) for t in (kinds, x, y, radius))
    centres = torch.arange(size, dtype=torch.float32) + 0.5
    masks = torch.zeros(kinds.numel(), size, size, dtype=torch.bool)
    for kind in range(len(CLASSES)):
        chosen = torch.nonzero(kinds == kind).flatten()
        if not len(chosen):
            continue
        dx = centres[None, None, :] - x[chosen, None, None]
        dy = centres[None, :, None] - y[chosen, None, None]
        r = radius[chosen, None, None]
        if kind == 0:
            inside = dx * dx + dy * dy <= r * r
        elif kind == 1:
            inside = torch.maximum(dx.abs(), dy.abs()) <= 0.8 * r
        elif kind == 2:
            inside = (dy <= 0.8 * r) & (dx.abs() <= (dy + r) * 0.55)
        else:
            arm = r / 3
            inside = ((dx.abs() <= arm) & (dy.abs() <= r)) | ((dy.abs() <= arm) & (dx.abs() <= r))
        masks[chosen] = inside
    return masks.reshape(*batch_shape, size, size)


def train_shapes(
    *,
    threads: int | None = 1,
    progress: Callable[[int, float], object] | None = None,
    **settings,
) -> ShapesDemo:
    """Train the shapes ViT from scratch; returns a ``ShapesDemo``.

    >>> demo = train_shapes(seed=0)                       # the defaults: 40-90 s on one thread
    >>> demo = train_shapes(seed=1, steps=50)             # any ShapesSettings field by keyword

    - Training: AdamW at ``lr`` with ``weight_decay``, warmed up over 100 steps, then a
      cosine decay to zero; gradients clipped to norm ``clip_norm``; cross-entropy on the
      label; a fresh batch each step.
    - ``threads``: ``torch.set_num_threads`` for the run, restored after (1 by default);
      None keeps the current count.
    - ``progress(step, loss)``: called after every step, step counted from 1.
    """
    settings = ShapesSettings(**settings)
    check_run(threads, progress)
    started = time.perf_counter()
    with intra_op_threads(threads):
        model = _untrained(settings)
        data = torch.Generator().manual_seed(settings.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        steps = settings.steps
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda done: min(1.0, (done + 1) / 100) * 0.5 * (1 + math.cos(math.pi * done / max(steps, 1))),
        )
        losses = []
        model.train()
        for step in range(steps):
            images, labels, _ = draw_images(settings, settings.batch_size, data)
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_norm)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if progress is not None:
                progress(step + 1, losses[-1])
        threads_used = torch.get_num_threads()
    model.eval()
    return ShapesDemo(model, settings, losses, time.perf_counter() - started, threads_used)


def _untrained(settings: ShapesSettings) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        return settings.model()


# --- the cache -----------------------------------------------------------------------------------


_CACHE = DemoCache(
    name="shapes",
    prefix="shapes-vit",
    trainer_version=TRAINER_VERSION,
    framework="timm",
    model="timm VisionTransformer state_dict",
    untrained=_untrained,
    demo=ShapesDemo,
)


def cache_path(settings: ShapesSettings) -> Path:
    """Where the weights trained with ``settings`` are cached (named after a hash of the settings)."""
    return _CACHE.path(settings)


def load_shapes_demo(
    settings: ShapesSettings | None = None,
    *,
    threads: int | None = 1,
    progress: Callable[[int, float], object] | None = None,
    **fields,
) -> ShapesDemo:
    """The shapes demo for these settings: read from the user cache, or trained and cached.

    >>> demo = load_shapes_demo(seed=0)                   # the first call trains (40-90 s)
    >>> demo = load_shapes_demo(seed=0)                   # later calls read the cache: well under a second
    >>> demo = load_shapes_demo(ShapesSettings(seed=1, steps=1500))  # or a settings object

    Takes a ``ShapesSettings`` or its fields by keyword (not both), and the keywords
    ``threads`` and ``progress`` of :func:`train_shapes`, which only matter when it trains.
    A cache file that cannot be used (see the module docstring) is trained again and
    replaced, with a ``CaptureWarning``; a cache folder that cannot be written warns and
    still returns the trained demo.
    """
    if settings is not None and not isinstance(settings, ShapesSettings):
        raise TypeError(
            f"settings must be a ShapesSettings or None, got {type(settings).__name__}; "
            "pass single fields by keyword: load_shapes_demo(seed=1)"
        )
    if settings is not None and fields:
        raise TypeError(
            "pass either settings or keyword fields, not both (got settings and "
            f"{', '.join(sorted(fields))}); use dataclasses.replace(settings, ...) to change a field"
        )
    chosen = settings if settings is not None else ShapesSettings(**fields)
    check_run(threads, progress)
    return _CACHE.load(
        chosen, lambda: train_shapes(threads=threads, progress=progress, **dataclasses.asdict(chosen))
    )
