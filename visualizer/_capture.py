"""``capture_attention(model)``: attention maps from any supported model, in one step.

>>> with capture_attention(model) as maps:
...     model(x)
>>> maps[0].shape                         # (batch, heads, queries, keys)

It finds the attention modules (see ``visualizer._adapters``), makes each produce its
weights for the duration of the block whatever kernel it normally uses, records them,
and puts every module back as it was, exceptions included. When something could not be
captured it says so, with the cause and the fix, instead of handing back an empty result.
"""

from __future__ import annotations

import threading
import warnings

from visualizer._adapters import attach, find_targets, supported
from visualizer._copy_guard import guard, release
from visualizer._errors import CaptureError, CaptureWarning
from visualizer._maps import AttentionMaps, MapsBuilder
from visualizer._selection import select_targets
from visualizer._structure import LayerInfo, Tokens

__all__ = ["AttentionCapture", "CaptureError", "capture_attention"]


def capture_attention(
    model,
    *,
    layers=None,
    device=None,
    dtype=None,
    keep_grad: bool = False,
    max_calls: int | None = None,
    threads: str = "own",
    get_local=None,
    lazy: bool | None = None,
) -> AttentionCapture:
    """Record every attention map ``model`` computes inside a ``with`` block.

    >>> with capture_attention(vit) as maps:
    ...     vit(images)
    >>> maps["blocks.3.attn"].shape      # (batch, heads, queries, keys)
    >>> maps.stack().shape               # (layers, batch, heads, queries, keys)

    layers: which attention modules, in model order: None (all); an int index or a list
        of them (negative counts from the end); a module path or a regular expression
        that must match the whole path (``r"blocks\\.(0|11)\\.attn"``); a list mixing those;
        or a callable ``(path, module) -> bool``.
    device, dtype: where and how to keep the maps (``device="cpu"`` to spare GPU memory,
        ``dtype=torch.float16`` to halve it); None keeps them as computed.
    keep_grad: keep each map's autograd graph (for gradient-weighted methods); the maps
        are detached otherwise.
    max_calls: keep at most this many calls per module, the oldest dropped first
        (generation loops); None keeps all.

    threads: ``"own"`` (default) records only the calls made in the thread that starts the
        capture, so a model that another thread uses meanwhile (a server, a prefetching
        worker) does not mix that thread's calls into the maps; ``"all"`` records every
        thread's calls (running the model in worker threads on purpose), in the order they end.
    get_local: the :class:`~visualizer._core.GetLocal` whose decorated functions count as
        attention and whose taps read timm's maps; the global ``visualizer.get_local`` by default.
    lazy: how maps are obtained. A module whose kernel is ``scaled_dot_product_attention``
        (transformers' ``sdpa``, timm's fused path, ``nn.MultiheadAttention``) can keep its own
        kernel: the capture keeps what defines the map (queries, keys, masks, scale) and
        rebuilds the map exactly when it is read, in linear memory (``maps.rows`` reads rows
        without building the rest). ``None`` (default) rebuilds wherever that is exact and
        computes the other maps eagerly; ``True`` requires it, and raises naming the modules
        that cannot; ``False`` computes every map eagerly, as the module's unfused path does.
        ``maps.info(key).rebuilt`` says which way each layer went, ``eager_reason`` why.
        ``device``, ``dtype`` and ``keep_grad`` apply to what is kept (queries and keys).

    It also works as ``capture = capture_attention(model); maps = capture.start(); ...;
    capture.stop()``.
    """
    return AttentionCapture(
        model,
        layers=layers,
        device=device,
        dtype=dtype,
        keep_grad=keep_grad,
        max_calls=max_calls,
        threads=threads,
        get_local=get_local,
        lazy=lazy,
    )


class AttentionCapture:
    """A capture of one model's attention maps; see :func:`capture_attention`."""

    def __init__(
        self,
        model,
        *,
        layers=None,
        device=None,
        dtype=None,
        keep_grad=False,
        max_calls=None,
        threads="own",
        get_local=None,
        lazy=None,
    ) -> None:
        from visualizer._core import GetLocal
        from visualizer._core import get_local as global_get_local

        torch = _torch()
        if get_local is None:
            get_local = global_get_local
        elif not isinstance(get_local, GetLocal):
            raise TypeError(
                f"capture_attention(): get_local must be a GetLocal such as visualizer.get_local, "
                f"not {type(get_local).__name__}"
            )
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"capture_attention() needs a torch.nn.Module, not {type(model).__name__}")
        if dtype is not None and not isinstance(dtype, torch.dtype):
            raise TypeError(
                f"capture_attention(): dtype must be a torch.dtype such as torch.float16, not {dtype!r}"
            )
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"capture_attention(): dtype must be a floating-point dtype, not {dtype}")
        if device is not None:
            try:
                device = torch.device(device)
            except (RuntimeError, TypeError) as exc:
                raise ValueError(f"capture_attention(): {device!r} is not a device ({exc})") from None
        if max_calls is not None:
            from visualizer._validate import positive_int

            max_calls = positive_int(max_calls, "capture_attention(max_calls=...)")
        if not isinstance(keep_grad, bool):
            raise TypeError(f"capture_attention(): keep_grad must be True or False, not {keep_grad!r}")
        if lazy not in (None, True, False) or (lazy is not None and not isinstance(lazy, bool)):
            raise TypeError(f"capture_attention(): lazy must be None, True or False, not {lazy!r}")
        self.lazy = lazy
        self._dropout = 0.0  # the largest dropout a rebuilt call ran with
        if threads not in ("own", "all"):
            raise ValueError(f"capture_attention(): threads must be 'own' or 'all', not {threads!r}")
        self.threads = threads
        self._thread: int | None = None  # the ident of the thread that started it, for "own"
        self.model = model
        self.core = get_local
        self.layers = layers
        self.device, self.dtype, self.keep_grad, self.max_calls = device, dtype, keep_grad, max_calls
        self.maps: AttentionMaps | None = None
        self._detachers: list = []
        self._handles: dict = {}  # id(target) -> builder handle
        self._builder: MapsBuilder | None = None
        self._grad_lost = False
        self._model_runs = 0
        self._selected: list = []
        self._guarded: list = []  # the modules made copyable while this capture is open
        self._patches = None  # the model's patch grids (visualizer._patches), from start()

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> AttentionMaps:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop(check=exc_type is None)

    def start(self) -> AttentionMaps:
        """Begin recording; returns the (live) :class:`AttentionMaps`."""
        if self._detachers:
            raise RuntimeError(
                "this capture has already started; use a new capture_attention(...) for another block"
            )
        found, refused = find_targets(self.model, self.core)
        model_name = type(self.model).__name__
        if not found:  # (get_local functions no module runs still count: the model may call them)
            not_supported = f" {_refusals(refused)}" if refused else ""
            raise ValueError(
                f"capture_attention found no attention module in {model_name} that it can record."
                f"{not_supported} "
                f"It records {supported()}. Fix: decorate the function that computes your attention map, "
                "e.g. @get_local('attn') on its forward, and keep the map in that local variable."
            )
        selected = self._selected = select_targets(
            found, self.layers, model_name, "capture_attention(layers=...)"
        )
        self._decide(selected, model_name)
        modules = sum(target.module is not None for target in found)
        builder = self._builder = MapsBuilder(model_name, modules, self.max_calls)
        depths: dict[str | None, dict[str, int]] = {}  # role -> {block: depth}
        for target in found:  # depth counts the blocks of one role, selected or not
            blocks = depths.setdefault(target.role, {})
            blocks.setdefault(target.block, len(blocks))
        chosen = {id(target) for target in selected}
        for index, target in enumerate(found):
            if id(target) not in chosen:
                continue
            info = LayerInfo(
                path=target.name,
                index=index,
                role=target.role,
                kind=target.kind,
                block=target.block,
                depth=depths[target.role][target.block],
                layout=target.layout,
                adapter=target.adapter,
                module=target.module is not None,
                rebuilt=target.lazy,
                eager_reason=None if target.lazy else self._eager_reason(target),
            )
            self._handles[id(target)] = builder.add(info)
        self.maps = builder.maps
        from visualizer._patches import PatchGrids

        self._patches = PatchGrids(self.model, [target.name for target in selected])
        self._model_runs = 0
        self._thread = threading.get_ident() if self.threads == "own" else None
        if refused:
            warnings.warn(f"capture_attention: {_refusals(refused)}", CaptureWarning, stacklevel=3)
        self._attach()
        self._guarded = list(self.model.modules())
        guard(self, self._guarded)
        return self.maps

    def _decide(self, selected: list, model_name: str) -> None:
        """Which targets keep their kernel (lazy) and which compute their maps eagerly."""
        for target in selected:
            target.lazy = self.lazy is not False and target.eager_because is None
        if self.lazy is True:
            cannot = [target for target in selected if not target.lazy]
            if cannot:
                listed = "; ".join(f"{target.name}: {target.eager_because}" for target in cannot[:6])
                more = f" and {len(cannot) - 6} more" if len(cannot) > 6 else ""
                raise ValueError(
                    f"capture_attention(lazy=True): {len(cannot)} selected attention module(s) of "
                    f"{model_name} cannot be rebuilt from what their kernel receives ({listed}{more}). "
                    "Use lazy=None to rebuild where exact and compute the others eagerly, or select "
                    "other layers."
                )

    def _eager_reason(self, target) -> str:
        if self.lazy is False:
            return "capture_attention(lazy=False) computes every map eagerly"
        return str(target.eager_because)

    def _attach(self) -> None:
        detachers = attach(self._selected, self, self.core)
        if self._patches:
            detachers.append(self._patches.attach(lambda: not self._foreign()))
        self._detachers = [*detachers, self.model.register_forward_pre_hook(self._model_ran).remove]

    def suspend(self) -> None:
        """Take the capture off the model for a moment (a copy of it is being made); see resume()."""
        detachers, self._detachers = self._detachers, []
        for detach in reversed(detachers):
            detach()

    def resume(self) -> None:
        """Put the capture back after suspend()."""
        self._attach()

    def _foreign(self) -> bool:
        """Whether the call reporting now runs in another thread than a threads="own" capture's."""
        return self._thread is not None and threading.get_ident() != self._thread

    def _model_ran(self, module, args) -> None:
        if self._foreign():
            return
        self._model_runs += 1

    def stop(self, check: bool = True) -> AttentionMaps | None:
        """Put every module back as it was; with ``check``, say loudly what could not be captured."""
        return self._stop(check)

    def _stop(self, check: bool) -> AttentionMaps | None:
        detachers, self._detachers = self._detachers, []
        for detach in reversed(detachers):
            detach()
        release(self, self._guarded)
        self._guarded = []
        if check and self.maps is not None:
            self._diagnose()  # warnings point at the caller of stop() or at the `with` statement
        return self.maps

    # -- the Recorder protocol (called from hooks and taps) ------------------------------

    def ran(self, target) -> None:
        if self._foreign():
            return
        self._builder.ran(self._handles[id(target)])

    def record(self, call) -> None:
        if self._foreign():
            return
        target, layout = call.target, call.layout
        handle = self._handles[id(target)]
        if call.eager_because is not None:
            self._builder.note_eager(handle, call.eager_because)
        if call.probabilities is None:
            recipe = call.recipe()
            self._builder.record(handle, self._keep(recipe), self._geometry(target, recipe.shape[3], layout))
            return
        weights = _as_map(call.probabilities)
        if isinstance(weights, str):
            self.missing(target, weights)
            return
        layout = self._geometry(target, weights.shape[-1], layout)
        if not self.keep_grad:
            weights = weights.detach()
        elif weights.grad_fn is None and not weights.requires_grad:
            self._grad_lost = True
        if self.device is not None or self.dtype is not None:
            weights = weights.to(device=self.device, dtype=self.dtype)
        self._builder.record(handle, weights, layout)

    def _geometry(self, target, keys: int, layout):
        """The call's layout, with the patch grid and prefix of image keys where they are known
        (see ``visualizer._patches``); an adapter's own windows or channels are kept as they are."""
        layout = target.layout if layout is None else layout
        if not self._patches or not isinstance(layout, Tokens) or layout.grid is not None:
            return layout
        return self._patches.layout(target.name, int(keys)) or layout

    def _keep(self, recipe):
        """What a Recipe keeps: its own copies of views into larger tensors, detached unless
        keep_grad, on ``device`` and in ``dtype``."""
        if not self.keep_grad:
            recipe = recipe.detach()
        elif not (recipe.query.requires_grad or recipe.key.requires_grad):
            self._grad_lost = True
        recipe = recipe.compact()
        if self.device is not None or self.dtype is not None:
            recipe = recipe.to(device=self.device, dtype=self.dtype)
        self._dropout = max(self._dropout, recipe.dropout)
        return recipe

    def missing(self, target, cause: str) -> None:
        if self._foreign():
            return
        self._builder.missing(self._handles[id(target)], cause)

    # -- diagnosis ------------------------------------------------------------------------------

    def _nothing_ran(self, modules: int, model_name: str) -> str:
        functions = [target.name for target in self._selected if target.module is None]
        uncalled = (
            f" The get_local functions {', '.join(functions)} are not called by it." if functions else ""
        )
        if not self._model_runs:
            return (
                f"None of the selected attention layers of {model_name} ran while capture was on: call the "
                "model inside the `with capture_attention(model) as maps:` block."
            )
        if not modules:
            return f"{model_name} ran {self._model_runs} time(s), but no attention layer did.{uncalled}"
        return (
            f"{model_name} ran {self._model_runs} time(s), but none of the {modules} attention layers "
            f"selected did (a branch that skips them?).{uncalled}"
        )

    def _diagnose(self) -> None:
        builder = self._builder
        entries = []
        for target in self._selected:  # get_local functions the model never called do not count
            runs, calls, misses = builder.status(self._handles[id(target)])
            if target.module is not None or runs:
                entries.append(_Status(target.name, runs, calls, misses))
        model_name = type(self.model).__name__
        ran = [entry for entry in entries if entry.runs]
        empty = [entry for entry in ran if not entry.calls]
        if not ran:
            diagnosis = self._nothing_ran(len(entries), model_name)
            builder.diagnose(diagnosis)
            warnings.warn(f"capture_attention: {diagnosis}", CaptureWarning, stacklevel=4)
            return
        if empty:
            causes = _causes(empty)
            message = (
                f"{len(empty)} of the {len(ran)} attention modules of {model_name} that ran produced no "
                f"attention weights ({_names(empty)}). {causes}"
            )
            builder.diagnose(message)
            if len(empty) == len(ran):
                raise CaptureError(f"capture_attention: nothing was captured. {message}")
            warnings.warn(f"capture_attention: {message}", CaptureWarning, stacklevel=4)
        partial = [entry for entry in ran if entry.calls and entry.misses]
        if partial:
            warnings.warn(
                f"capture_attention: some calls of {_names(partial)} produced no weights. {_causes(partial)}",
                CaptureWarning,
                stacklevel=4,
            )
        if self._dropout > 0:
            warnings.warn(
                f"capture_attention: some rebuilt layers ran with attention dropout (p={self._dropout:g}, "
                "the model is in training mode); their maps are the probabilities before dropout. Call "
                "model.eval(), or capture with lazy=False for the maps after dropout.",
                CaptureWarning,
                stacklevel=4,
            )
        if self.keep_grad and self._grad_lost:
            warnings.warn(
                "capture_attention(keep_grad=True): the maps have no autograd graph because the model ran "
                "under torch.no_grad() (or inference_mode); run it with gradients enabled to keep them.",
                CaptureWarning,
                stacklevel=4,
            )


class _Status:
    """One selected layer's counts, for the diagnosis."""

    __slots__ = ("calls", "misses", "name", "runs")

    def __init__(self, name: str, runs: int, calls: int, misses: list[str]) -> None:
        self.name, self.runs, self.calls, self.misses = name, runs, calls, misses


def _refusals(refused: list) -> str:
    """One sentence per reason, naming the modules refused for it."""
    by_reason: dict[str, list[str]] = {}
    for refusal in refused:
        by_reason.setdefault(refusal.reason, []).append(refusal.name or "'' (the model itself)")
    parts = []
    for reason, names in by_reason.items():
        listed = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        parts.append(
            f"{len(names)} attention module(s) are not supported and are not captured ({listed}): {reason}"
        )
    return " ".join(parts)


def _as_map(weights):
    """``weights`` as (batch, heads, queries, keys), or a str saying why it is not a map."""
    torch = _torch()
    if not isinstance(weights, torch.Tensor):
        return (
            f"the recorded value is a {type(weights).__name__}, not a tensor; capture the variable that "
            "holds the attention probabilities, shaped (batch, heads, queries, keys)"
        )
    if weights.dim() == 4:
        return weights
    if weights.dim() in (2, 3):  # (queries, keys) or (heads, queries, keys): one sequence
        return weights.reshape((1,) * (4 - weights.dim()) + tuple(weights.shape))
    return (
        f"the recorded tensor has shape {tuple(weights.shape)}; an attention map is "
        "(batch, heads, queries, keys), or (heads, queries, keys) for one sequence"
    )


def _names(entries: list) -> str:
    listed = ", ".join(entry.name for entry in entries[:4])
    return listed + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")


def _causes(entries: list) -> str:
    causes = []
    for entry in entries:
        for cause in entry.misses or [f"{entry.name} ran without handing over weights."]:
            if cause not in causes:
                causes.append(cause)
    return " ".join(causes[:3])


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - the models extra brings torch
        raise ImportError(
            'capture_attention needs torch: pip install -c constraints.txt -e ".[models]"'
        ) from None
    return torch
