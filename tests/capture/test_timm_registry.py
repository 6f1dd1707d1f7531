"""Every timm model family: each attention probability it computes is captured exactly, or refused aloud.

For one small variant per family of ``timm.list_models()`` (grouped by the module that
registers it; the first name by size words 'pico' < 'nano' < 'tiny' < 'xxs' < ... then by
length), built with random weights and shrunk (``SHRINK``), a forward under a
``TorchFunctionMode`` records, for the innermost running module, every softmax over the last
dimension of a tensor of 3 or more dims (an attention map has at least batch, queries and keys;
this leaves out softmaxes over a parameter vector, such as EfficientViM's head weights) and
every ``F.scaled_dot_product_attention`` call, whose probabilities are computed here from its
arguments (q, k, attn_mask, is_causal, scale, enable_gqa). The same input then runs under
``capture_attention(model)``: each recording module must be captured (itself or its nearest
captured ancestor) with maps equal to the reference to 1e-5 (or to the adapter plan's
``derive`` of it: talking heads, differential attention, ConViT's gated mix), or be refused,
its reason in the CaptureWarning. The capture must leave the model's output as it is (1e-5:
modules computed eagerly switch fused_attn off), and for a model with rebuilt modules (fused
attention kept, maps rebuilt on demand) one more capture, ``lazy=False``, must give each rebuilt
module's maps again, computed eagerly; the summary counts rebuilt and eager modules.

Counts (``pytest -s tests/capture/test_timm_registry.py`` prints them; timm 1.0.31, torch 2.14):
98 families; 103 models tried (95 families and 8 ``EXTRAS`` configs for attention classes the
first variants do not use: ViT with latent/PRR pooling, differential and parallel blocks,
HaloNet, LambdaNet, CLIP ResNet's AttentionPool2d); 205 modules captured, 151 refused (each
with its reason), 0 uncovered; 3 families left out (``LEFT_OUT``: mobilenetv5, nasnet,
pnasnet: their only or smallest variants take 10-40 s a forward on 2 cores; nasnet and
pnasnet have no attention). The file runs in about 65 s on 2 cores.
"""

from __future__ import annotations

import collections
import math
import time
import warnings

import pytest
import torch
import torch.nn.functional as F
from registry_record import RegistryRecord
from torch.overrides import TorchFunctionMode

import visualizer
from visualizer import CaptureWarning, capture_attention
from visualizer._adapters import find_targets
from visualizer._structure import Tokens

timm = pytest.importorskip("timm")
from timm.models import _registry  # noqa: E402

S = 64  # input side for models built with img_size=S
SIZE_WORDS = ("pico", "nano", "tiny", "xxs", "xs", "small", "s0", "m0", "b0", "t8")

# family -> (variant or None for the default pick, constructor kwargs, input side or None)
SHRINK: dict[str, tuple] = {
    "beit": (None, dict(img_size=S, depth=2, embed_dim=64, num_heads=2), S),
    "byoanet": ("botnet26t_256", {}, 256),
    "csatv2": (None, {}, 128),
    "cait": ("cait_xxs24_224", dict(img_size=S, depth=2, depth_token_only=1, embed_dim=64, num_heads=2), S),
    "coat": (None, dict(img_size=S), S),
    "convit": (None, dict(img_size=S, depth=2, embed_dim=64, num_heads=2), S),
    "crossvit": ("crossvit_tiny_240", dict(depth=((1, 1, 0),), num_heads=(2, 2)), 240),
    "davit": (None, dict(depths=(1, 1, 1, 1), embed_dims=(32, 32, 32, 32), num_heads=(2, 2, 2, 2)), S),
    "deepseek_vit": (None, dict(img_size=56, depth=2, embed_dim=64, num_heads=2), 56),
    "deit": (None, dict(img_size=S, depth=2, embed_dim=64, num_heads=2), S),
    "edgenext": ("edgenext_xx_small", dict(depths=(1, 1, 1, 1)), S),
    "efficientformer": (None, dict(depths=(1, 1, 1, 1)), 224),
    "efficientformer_v2": ("efficientformerv2_s0", dict(img_size=S), S),
    "eva": (None, dict(img_size=56, depth=2, embed_dim=64, num_heads=2), 56),
    "gcvit": ("gcvit_xxtiny", dict(img_size=S), S),
    "gemma4_vit": (None, dict(img_size=S, depth=2, embed_dim=64, num_heads=2), S),
    "hiera": (None, dict(img_size=(S, S)), S),
    "hieradet_sam2": (None, {}, 128),
    "iformer": ("iformer_t", {}, S),
    "levit": (None, dict(img_size=S), S),
    "maxxvit": (None, dict(img_size=S), S),
    "metaformer": ("caformer_s18", {}, S),
    "naflexvit": (None, dict(img_size=S, depth=2, embed_dim=64, num_heads=2), S),
    "nest": (None, dict(img_size=S), S),
    "pit": ("pit_ti_224", dict(img_size=S), S),
    "qwen3_vit": (None, dict(img_size=S, depth=2, embed_dim=64, num_heads=2), S),
    "swin_transformer": (
        "swin_tiny_patch4_window7_224",
        dict(img_size=S, depths=(2, 2), embed_dim=32, num_heads=(2, 2)),
        S,
    ),
    "swin_transformer_v2": (None, dict(img_size=S, depths=(2, 2), embed_dim=32, num_heads=(2, 2)), S),
    "swin_transformer_v2_cr": (None, dict(img_size=S, depths=(2, 2), embed_dim=32, num_heads=(2, 2)), S),
    "tnt": ("tnt_s_patch16_224", dict(img_size=S, depth=2), S),
    "twins": ("twins_pcpvt_small", dict(img_size=S, depths=(1, 1, 1, 1)), S),
    "vision_transformer": (None, dict(img_size=S, depth=2, embed_dim=64, num_heads=2), S),
    "vision_transformer_hybrid": (None, dict(img_size=S, depth=2, num_heads=2), S),
    "vision_transformer_relpos": (None, dict(img_size=S, depth=2, embed_dim=64, num_heads=2), S),
    "vision_transformer_sam": (
        None,
        dict(img_size=S, depth=2, embed_dim=64, num_heads=2, window_size=3, global_attn_indexes=(1,)),
        S,
    ),
    "vitamin": (None, dict(img_size=S, depth=2), S),
    "volo": (None, dict(img_size=S), S),
    "xcit": (None, dict(img_size=S, depth=2, embed_dim=64, num_heads=2), S),
}

#: Attention classes the families' first variants do not use, in a variant or config that does.
EXTRAS: dict[str, tuple] = {
    "vision_transformer/map": ("vit_tiny_patch16_224", dict(img_size=S, depth=1, global_pool="map"), S),
    "vision_transformer/prr": ("vit_tiny_patch16_224", dict(img_size=S, depth=1, global_pool="prr"), S),
    "vision_transformer/diff": ("vit_tiny_patch16_224", dict(img_size=S, depth=1, attn_layer="diff"), S),
    "vision_transformer/parallel": (
        "vit_tiny_patch16_224",
        dict(img_size=S, depth=1, block_fn="parallel"),
        S,
    ),
    "vision_transformer/diff_parallel": (
        "vit_tiny_patch16_224",
        dict(img_size=S, depth=1, block_fn="diff_parallel"),
        S,
    ),
    "byoanet/halo": ("halonet26t", {}, 256),
    "byoanet/lambda": ("lambda_resnet26t", {}, 128),
    "byobnet/attention_pool2d": ("resnet50_clip", dict(img_size=S), S),
}

#: Families left out, and why.
LEFT_OUT = {
    "mobilenetv5": "the smallest variant (300M parameters, 768 px) takes ~40 s to build and run on 2 cores",
    "nasnet": "only nasnetalarge (331 px), ~10 s a forward; a CNN without attention",
    "pnasnet": "only pnasnet5large (331 px), ~10 s a forward; a CNN without attention",
}

COUNTS = collections.Counter()
FOUND = RegistryRecord("timm")  # per family, for the docs' model matrix (docs/registry/timm.json)
SKIPPED: dict[str, str] = {}


def _families() -> dict[str, list[str]]:
    families = collections.defaultdict(list)
    for name in timm.list_models():
        families[_registry._model_to_module[name]].append(name)
    return dict(sorted(families.items()))


def _pick(names: list[str]) -> str:
    def key(name):
        for rank, word in enumerate(SIZE_WORDS):
            if word in name:
                return (rank, len(name), name)
        return (len(SIZE_WORDS), len(name), name)

    return sorted(names, key=key)[0]


FAMILIES = _families()


def _build(family: str):
    """(model, input side) for the family, shrunk where the constructor allows, or a skip reason (str)."""
    variant, kwargs, side = EXTRAS.get(family) or SHRINK.get(family, (None, dict(img_size=S), S))
    if kwargs.get("block_fn") in ("parallel", "diff_parallel"):
        from timm.models import vision_transformer as vt

        kinds = {"parallel": vt.ParallelScalingBlock, "diff_parallel": vt.DiffParallelScalingBlock}
        kwargs = {**kwargs, "block_fn": kinds[kwargs["block_fn"]]}
    name = variant or _pick(FAMILIES[family])
    model = _create(name, kwargs)
    if isinstance(model, str) and kwargs:  # the kwargs refused: fall back to the defaults
        model, side = _create(name, {}), None
    if isinstance(model, str):
        return name, f"cannot be built: {model}", None
    return name, model, side


def runnable(family: str, batch: int):
    """``(model, x)``: the family's small model and a random (batch, 3, side, side) input it runs on
    (its own side, else ``S``, else its pretrained input size); pytest.skip where there is none."""
    if family in LEFT_OUT:
        pytest.skip(LEFT_OUT[family])
    _, model, side = _build(family)
    if isinstance(model, str):
        pytest.skip(model)
    sides = [side] if side else [S, model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]]
    for size in sides:
        torch.manual_seed(1)
        x = torch.randn(batch, 3, size, size)
        try:
            with torch.no_grad():
                model(x)
            return model, x
        except Exception:
            continue
    pytest.skip("does not run at the sizes tried")


def _reference(model, side):
    """(input, probe, output) after a forward under the probe (which leaves the output as it is);
    with no side, S px first, else the configured size."""
    sides = [side] if side else [S, model.pretrained_cfg.get("input_size", (3, 224, 224))[-1]]
    for attempt, size in enumerate(sides):
        torch.manual_seed(1)
        x = torch.randn(2, 3, size, size)
        probe = Probe(model)
        try:
            with torch.no_grad(), probe:
                output = model(x)
            return x, probe, output
        except Exception:
            if attempt == len(sides) - 1:
                raise


def _create(name: str, kwargs: dict):
    torch.manual_seed(0)
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, **kwargs).eval()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:120]}"


# -- the reference: softmaxes and sdpa probabilities, by innermost running module -----------------


def sdpa_probabilities(
    q, k, v=None, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
):
    """softmax(q k^T * scale + mask), as F.scaled_dot_product_attention defines it (no dropout: eval)."""
    scale = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    if enable_gqa and k.size(-3) != q.size(-3):
        k = k.repeat_interleave(q.size(-3) // k.size(-3), dim=-3)
    scores = (q.double() @ k.double().transpose(-2, -1)) * scale
    if is_causal:
        causal = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask.double()
    return scores.softmax(dim=-1).to(q.dtype)


SOFTMAXES = {torch.softmax, torch.Tensor.softmax, F.softmax, torch.nn.functional.softmax}


class Probe(TorchFunctionMode):
    """Records (innermost module path, probabilities) for each attention softmax and sdpa call."""

    def __init__(self, model) -> None:
        super().__init__()
        self.paths = {id(module): path for path, module in model.named_modules()}
        self.stack: list[str] = []
        self.events: list[tuple[str, torch.Tensor]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in SOFTMAXES:
            x = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if isinstance(x, torch.Tensor) and x.dim() >= 3 and dim in (-1, x.dim() - 1):
                self.events.append((self.stack[-1] if self.stack else "", out.detach().clone()))
        elif func is F.scaled_dot_product_attention:
            self.events.append((self.stack[-1] if self.stack else "", sdpa_probabilities(*args, **kwargs)))
        return out

    def __enter__(self):
        def pre(module, args):
            path = self.paths.get(id(module))
            self.stack.append(path if path is not None else (self.stack[-1] if self.stack else ""))

        def post(module, args, output):
            self.stack.pop()

        self.handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(pre),
            torch.nn.modules.module.register_module_forward_hook(post, always_call=True),
        ]
        return super().__enter__()

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        return super().__exit__(*exc)


def _owner(path: str, names: set[str]) -> str | None:
    """``path`` or its nearest ancestor among ``names`` ("" is the model itself)."""
    parts = path.split(".") if path else []
    for end in range(len(parts), -1, -1):
        candidate = ".".join(parts[:end])
        if candidate in names:
            return candidate
    return None


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print(
        f"\ntimm registry: {len(FAMILIES)} families, {COUNTS['tried']} models tried, "
        f"{COUNTS['captured']} modules captured ({COUNTS['rebuilt']} rebuilt, {COUNTS['eager']} eager; "
        f"the rebuilt ones of {COUNTS['rebuilt models']} models equal to a lazy=False capture), "
        f"{COUNTS['refused']} modules refused, {len(SKIPPED) + len(LEFT_OUT)} models skipped; "
        f"{COUNTS['gridded']} captured modules declare a patch grid and prefix tokens"
    )
    for family, reason in {**LEFT_OUT, **SKIPPED}.items():
        print(f"  skipped {family}: {reason}")
        if family not in FOUND.cases:  # (a slow one is recorded as such)
            FOUND.add(family, {"outcome": "skipped", "reason": reason})
    FOUND.finish(
        len(FAMILIES) + len(EXTRAS), {"timm": timm.__version__, "torch": torch.__version__.split("+")[0]}
    )


@pytest.mark.parametrize("family", [*FAMILIES, *EXTRAS])
def test_every_attention_is_captured_exactly_or_refused(family):
    if family in LEFT_OUT:
        pytest.skip(LEFT_OUT[family])
    name, model, size = _build(family)
    if isinstance(model, str):
        SKIPPED[family] = f"{name} {model}"
        pytest.skip(model)
    started = time.perf_counter()
    x, probe, plain = _reference(model, size)
    size = x.shape[-1]
    if time.perf_counter() - started > 10:
        SKIPPED[family] = f"{name}: a forward takes over 10 s"
        FOUND.add(family, {"model": name, "outcome": "slow", "reason": "a forward takes over 10 s"})
        pytest.skip(SKIPPED[family])
    COUNTS["tried"] += 1
    targets, refusals = find_targets(model, visualizer.get_local)
    if targets:
        with warnings.catch_warnings(record=True) as caught, torch.no_grad():
            warnings.simplefilter("always")
            with capture_attention(model) as maps:
                output = model(x)
        # the capture leaves the output as it is (rebuilt layers keep their kernel; eager ones
        # switch fused_attn off, which rounds differently)
        torch.testing.assert_close(output, plain, atol=1e-5, rtol=1e-4)
        warned = " ".join(str(w.message) for w in caught if issubclass(w.category, CaptureWarning))
    else:  # nothing to capture: capture_attention refuses the model, naming what it refused
        with pytest.raises(ValueError, match="found no attention module in .* that it can record") as raised:
            capture_attention(model).start()
        warned, maps = str(raised.value), []
    captured = {t.name: t for t in targets}
    refused = {r.name: r for r in refusals}
    COUNTS["captured"] += len(maps)
    COUNTS["refused"] += len(refused)
    for refusal in refusals:
        assert refusal.reason in warned, f"{name}: refusal of {refusal.name} not in the warning"

    expected = collections.defaultdict(list)
    for path, probabilities in probe.events:
        owner = _owner(path, set(captured) | set(refused))
        assert owner is not None, (
            f"{name}: {path or 'the model'} ({type(model.get_submodule(path)).__qualname__}) computes "
            "attention probabilities but is neither captured nor refused"
        )
        if owner in captured:
            expected[owner].append(probabilities)
    for path, target in captured.items():
        calls = maps.calls(path) if path in maps.names else []  # (maps is [] only without targets)
        references = expected.get(path, [])
        derive = target.payload.plan.derive
        if derive is not None and references:
            references = [derive(target.module, references)]
        assert len(calls) == len(references), (
            f"{name}: {path} captured {len(calls)} maps for {len(references)} reference softmaxes"
        )
        for call, reference in zip(calls, references):
            assert reference.numel() == call.numel(), (
                f"{name}: {path} {tuple(call.shape)} vs {tuple(reference.shape)}"
            )
            torch.testing.assert_close(call, reference.reshape(call.shape), atol=1e-5, rtol=1e-4)
    # Where a call's keys are declared as prefix tokens and a patch grid, they account for every key;
    # a plain ViT's blocks declare the grid its patch embedding was built for (at this input size).
    gridded = 0
    for path in maps.names if targets else []:
        for call, weights in enumerate(maps.calls(path)):
            layout = maps.layout(path, call)
            if isinstance(layout, Tokens) and layout.grid is not None:
                gridded += call == 0
                assert layout.keys == weights.shape[-1], (
                    f"{name}: {path} call {call}: {layout} vs {weights.shape}"
                )
                grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
                if (
                    type(model).__name__ == "VisionTransformer"
                    and path.startswith("blocks.")
                    and grid is not None
                ):
                    assert layout == Tokens(prefix=model.num_prefix_tokens, grid=tuple(grid)), (
                        f"{name}: {path}"
                    )
    COUNTS["gridded"] += gridded
    rebuilt = [path for path in captured if path in maps.names and maps.info(path).rebuilt]
    COUNTS["rebuilt"] += len(rebuilt)
    COUNTS["eager"] += len(maps) - len(rebuilt)
    if rebuilt:  # one more forward, only where some map is rebuilt: each equals its eager map
        COUNTS["rebuilt models"] += 1
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", CaptureWarning)  # (the refusals, said above)
            with capture_attention(model, lazy=False) as eager:
                output = model(x)
        torch.testing.assert_close(output, plain, atol=1e-5, rtol=1e-4)
        for path in rebuilt:
            assert not eager.info(path).rebuilt, f"{name}: {path} rebuilt under lazy=False"
            assert len(eager.calls(path)) == len(maps.calls(path)), f"{name}: {path} calls"
            for lazy_map, eager_map in zip(maps.calls(path), eager.calls(path)):
                torch.testing.assert_close(lazy_map, eager_map, atol=1e-5, rtol=1e-4)
    FOUND.add(
        family,
        {
            "model": name,
            "outcome": "captured" if captured else "refused" if refused else "no attention",
            "captured": sorted({type(t.module).__qualname__ for t in targets}),
            "maps": len(maps),
            "rebuilt": len(rebuilt),
            "refused": {type(r.module).__qualname__: r.reason for r in refusals} if refusals else {},
        },
    )
    print(
        f"\n{family}: {name} at {size}px, {len(maps)} captured ({len(rebuilt)} rebuilt), "
        f"{len(refused)} refused"
    )
