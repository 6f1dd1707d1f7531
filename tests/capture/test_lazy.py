"""Maps rebuilt on demand (capture_attention's lazy): exact, against references written here.

A :class:`~visualizer._lazy.Recipe` is checked against a softmax written in this file; the
captures against what each framework computes itself: eager ``output_attentions`` for
transformers, ``need_weights=True`` for ``nn.MultiheadAttention``, a ``lazy=False`` capture
(fused_attn off) for timm. A query row that sees no key is all zeros when rebuilt (what the
fused kernels compute) and uniform in eager's weights: those rows are left out of the
comparisons, and each comparison keeps some rows.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from visualizer import CaptureWarning, capture_attention
from visualizer._lazy import BLOCK_ROWS, Recipe

# -- a softmax written here ---------------------------------------------------------------------


def softmax_reference(q, k, masks=(), causal=False, scale=None):
    """softmax(scale q k^T + bias) in float64, key heads repeated for grouped queries; a row
    that sees no key is zero."""
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1)
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.einsum("bhqd,bhkd->bhqk", q.double(), k.double()) * scale
    keep = torch.ones(scores.shape, dtype=torch.bool)
    if causal:
        keep = keep & torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
    for mask in masks:
        if mask.dtype == torch.bool:
            keep = keep & mask
        else:
            scores = scores + mask.double()
    scores = scores.masked_fill(~keep, -math.inf)
    weights = torch.nan_to_num(scores.softmax(dim=-1), nan=0.0)
    return weights.float()


def seen_rows(weights):
    """Query rows that see some key (not all zero)."""
    return weights.ne(0).any(dim=-1)


def assert_equal_where_seen(rebuilt, reference, atol=1e-5):
    assert rebuilt.shape == reference.shape, (rebuilt.shape, reference.shape)
    seen = seen_rows(rebuilt)
    assert bool(seen.any()), "no query row sees a key: nothing to compare"
    torch.testing.assert_close(rebuilt[seen], reference[seen], atol=atol, rtol=0)


def _tensors(batch=2, heads=4, kv_heads=4, queries=6, keys=6, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, heads, queries, dim, generator=generator)
    k = torch.randn(batch, kv_heads, keys, dim, generator=generator)
    return q, k, generator


def _case(name):
    q, k, generator = _tensors(kv_heads=2 if name == "gqa" else 4, keys=9 if name == "more keys" else 6)
    b, h, n_q, n_k = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    masks, causal, scale = (), False, None
    if name == "causal":
        causal = True
    elif name == "bool padding":  # (batch, 1, 1, keys): the second sequence's last 2 keys hidden
        masks = (torch.tensor([[True] * n_k, [True] * (n_k - 2) + [False] * 2])[:, None, None],)
    elif name == "bool full":  # (batch, heads, queries, keys), some rows hide every key
        mask = torch.rand(b, h, n_q, n_k, generator=generator) > 0.4
        mask[0, 1, 2] = False
        masks = (mask,)
    elif name == "float":  # additive, broadcast over heads, with -inf entries
        bias = torch.randn(b, 1, n_q, n_k, generator=generator)
        bias[1, 0, :, 0] = -math.inf
        masks = (bias,)
    elif name == "causal and float and bool":
        causal = True
        masks = (torch.randn(1, h, n_q, n_k, generator=generator), torch.rand(b, 1, 1, n_k) > 0.3)
    elif name == "gqa":
        causal = True
    elif name == "scale":
        scale = 0.3
    elif name == "more keys":  # 6 queries, 9 keys: causal is aligned top left, as sdpa's
        causal = True
    return q, k, masks, causal, scale


CASES = [
    "plain",
    "causal",
    "bool padding",
    "bool full",
    "float",
    "causal and float and bool",
    "gqa",
    "scale",
    "more keys",
]


@pytest.mark.parametrize("name", CASES)
def test_a_recipe_rebuilds_the_softmax_whole_by_rows_heads_and_blocks(name):
    q, k, masks, causal, scale = _case(name)
    recipe = Recipe(q, k, masks, causal=causal, scale=scale)
    expected = softmax_reference(q, k, masks, causal, scale)
    assert recipe.shape == expected.shape
    torch.testing.assert_close(recipe.full(), expected, atol=1e-6, rtol=0)
    for rows in (3, -1, slice(1, 5, 2), [4, 0, 4], torch.tensor([5, 2]), torch.tensor(1)):
        index = rows if isinstance(rows, slice) else torch.as_tensor(rows).reshape(-1)
        torch.testing.assert_close(recipe.rows(rows), expected[:, :, index], atol=1e-6, rtol=0)
    for heads in ([3, 0], slice(1, 3), 2):  # grouped-query heads pick their own key head
        index = heads if isinstance(heads, slice) else torch.as_tensor(heads).reshape(-1)
        torch.testing.assert_close(
            recipe.rows([1, 2], heads=heads), expected[:, index][:, :, [1, 2]], atol=1e-6, rtol=0
        )
    blocks = list(recipe.blocks(size=4))
    assert [first for first, _ in blocks] == [0, 4]
    torch.testing.assert_close(torch.cat([block for _, block in blocks], dim=2), expected, atol=1e-6, rtol=0)


def test_a_recipe_times_the_values_is_what_sdpa_returns():
    q, k, masks, causal, scale = _case("causal and float and bool")
    v = torch.randn(k.shape)
    keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril() & masks[1]
    mask = masks[0].masked_fill(~keep, -math.inf)  # every key of some row is hidden: sdpa gives nan there
    out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).nan_to_num()
    recipe = Recipe(q, k, masks, causal=True, scale=scale)
    torch.testing.assert_close(recipe.full() @ v, out, atol=1e-5, rtol=0)
    gqa_q, gqa_k, _ = _tensors(kv_heads=2)
    gqa_v = torch.randn(gqa_k.shape)
    out = nn.functional.scaled_dot_product_attention(gqa_q, gqa_k, gqa_v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(
        Recipe(gqa_q, gqa_k, causal=True).full() @ gqa_v.repeat_interleave(2, dim=1), out, atol=1e-5, rtol=0
    )


def test_rows_across_block_boundaries_equal_the_full_map():
    q, k, generator = _tensors(batch=2, heads=2, kv_heads=1, queries=BLOCK_ROWS + 44, keys=BLOCK_ROWS + 44)
    pad = torch.ones(2, 1, 1, k.shape[2], dtype=torch.bool)
    pad[1, ..., -50:] = False  # padding: the last query rows of the second sequence still see keys
    recipe = Recipe(q, k, (pad,), causal=True)
    expected = softmax_reference(q, k, (pad,), causal=True)
    torch.testing.assert_close(recipe.full(), expected, atol=1e-6, rtol=0)
    rows = [0, BLOCK_ROWS - 1, BLOCK_ROWS, BLOCK_ROWS + 43]
    torch.testing.assert_close(recipe.rows(rows), expected[:, :, rows], atol=1e-6, rtol=0)
    blocks = list(recipe.blocks())
    assert [first for first, _ in blocks] == [0, BLOCK_ROWS]
    torch.testing.assert_close(torch.cat([b for _, b in blocks], dim=2), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("rows", "heads", "error", "words"),
    [
        (6, None, IndexError, "query row 6 is out of range: there are 6"),
        (-7, None, IndexError, "query row -7 is out of range"),
        ([0, 9], None, IndexError, "query row 9 is out of range"),
        (0, 4, IndexError, "head 4 is out of range: there are 4"),
        (0, [-5], IndexError, "head -5 is out of range"),
        (1.5, None, TypeError, "not float"),
        (True, None, TypeError, "not True"),
        ([0, 1.0], None, TypeError, "must be ints"),
        (torch.tensor([0.0]), None, TypeError, "integer tensor"),
        (torch.tensor([True]), None, TypeError, "integer tensor"),
        (torch.zeros(2, 2, dtype=torch.long), None, TypeError, "0-D or 1-D"),
        (0, "ab", TypeError, "heads must be ints"),
    ],
)
def test_bad_query_rows_and_heads_are_named_in_the_error(rows, heads, error, words):
    q, k, _ = _tensors()
    with pytest.raises(error, match=words.replace("(", r"\(")):
        Recipe(q, k).rows(rows, heads=heads)


def test_queries_and_keys_that_do_not_pair_are_refused():
    with pytest.raises(ValueError, match="key heads must divide query heads"):
        Recipe(torch.randn(1, 4, 3, 8), torch.randn(1, 3, 3, 8))
    with pytest.raises(ValueError, match=r"\(batch, heads, tokens, head dim\)"):
        Recipe(torch.randn(4, 3, 8), torch.randn(4, 3, 8))


# -- timm: rebuilt and eager layers read alike ------------------------------------------------------


def _timm_maps(model, x, **options):
    with torch.no_grad(), capture_attention(model, **options) as maps:
        out = model(x)
    return maps, out


def test_rows_and_row_blocks_read_slices_of_rebuilt_and_eager_layers_alike(tiny_vit):
    x = torch.randn(2, 3, 32, 32)
    for lazy, rebuilt in ((None, True), (False, False)):
        maps, _ = _timm_maps(tiny_vit, x, lazy=lazy)
        for i in range(len(maps)):
            assert maps.info(i).rebuilt is rebuilt
            assert (maps.recipe(i) is not None) is rebuilt
            whole = maps[i]
            assert maps.shape(i) == tuple(whole.shape)
            # (rebuilt rows are computed in blocks of their own: float32 rounding, ~1e-8)
            torch.testing.assert_close(maps.rows(i, [4, 0]), whole[:, :, [4, 0]], atol=1e-7, rtol=0)
            torch.testing.assert_close(
                maps.rows(i, 2, heads=[1]), whole[:, [1]][:, :, [2]], atol=1e-7, rtol=0
            )
            blocks = list(maps.row_blocks(i, size=2))
            assert [first for first, _ in blocks] == [0, 2, 4]
            torch.testing.assert_close(torch.cat([b for _, b in blocks], dim=2), whole, atol=1e-7, rtol=0)
        with pytest.raises(IndexError, match="out of range"):
            maps.rows(0, 5)
        if lazy is None:
            rebuilt_maps = [maps[i] for i in range(len(maps))]
    for lazy_map, eager_map in zip(rebuilt_maps, [maps[i] for i in range(len(maps))]):
        torch.testing.assert_close(lazy_map, eager_map, atol=1e-6, rtol=0)


def test_lazy_true_names_the_modules_that_cannot_be_rebuilt():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    swin = timm.create_model(
        "swin_tiny_patch4_window7_224",
        pretrained=False,
        num_classes=0,
        img_size=32,
        depths=(1, 1),
        embed_dim=16,
        num_heads=(1, 2),
        window_size=4,
    ).eval()
    for module in swin.modules():
        if hasattr(module, "fused_attn"):
            module.fused_attn = False
    with pytest.raises(
        ValueError, match=r"lazy=True.*layers\.0\.blocks\.0\.attn: WindowAttention\.fused_attn is off"
    ):
        capture_attention(swin, lazy=True).start()
    with pytest.raises(TypeError, match="lazy must be None, True or False, not 'yes'"):
        capture_attention(swin, lazy="yes")


def test_lazy_true_names_a_get_local_decorated_function(public_get_local):
    class Scores(nn.Module):
        def forward(self, x):
            attn_map = (x @ x.transpose(-2, -1)).softmax(-1)
            return attn_map @ x

    public_get_local("attn_map")(Scores.forward)
    model = nn.Sequential(Scores())
    with pytest.raises(ValueError, match=r"lazy=True.*\(0: "):
        capture_attention(model, lazy=True).start()
    with torch.no_grad(), capture_attention(model) as maps:  # lazy=None: computed, and said so
        model(torch.randn(1, 3, 4))
    assert maps.info(0).rebuilt is False and maps.info(0).eager_reason


def test_a_lazy_capture_of_the_last_layer_touches_no_other_module(tiny_vit):
    from references import timm_attention

    x = torch.randn(2, 3, 32, 32)
    blocks = tiny_vit.blocks
    with torch.no_grad():
        expected = tiny_vit(x)
        inputs = {}
        handle = blocks[-1].attn.register_forward_pre_hook(lambda m, args: inputs.setdefault("x", args[0]))
        tiny_vit(x)
        handle.remove()
        seen = {}
        with capture_attention(tiny_vit, layers=[-1], lazy=True) as maps:
            for i, block in enumerate(blocks):
                modules = list(block.modules())
                seen[i] = (
                    any(m._forward_hooks or m._forward_pre_hooks for m in modules),
                    all(m.fused_attn for m in modules if hasattr(m, "fused_attn")),
                )
            out = tiny_vit(x)
    assert seen == {0: (False, True), 1: (False, True), 2: (True, True)}
    torch.testing.assert_close(out, expected, atol=0, rtol=0)  # the kernels ran as they were
    assert maps.names == ["blocks.2.attn"] and maps.info(0).rebuilt
    torch.testing.assert_close(maps[0], timm_attention(blocks[-1].attn, inputs["x"]), atol=1e-5, rtol=0)


def test_gradients_through_a_rebuilt_map_equal_those_through_the_eager_one(tiny_vit):
    torch.manual_seed(2)
    x = torch.randn(1, 3, 32, 32)
    weights = torch.randn(1, 3, 5, 5)
    grads = {}
    for lazy in (None, False):
        image = x.clone().requires_grad_(True)
        with capture_attention(tiny_vit, keep_grad=True, lazy=lazy) as maps:
            tiny_vit(image)
        assert maps.info(1).rebuilt is (lazy is None)
        (grads[lazy],) = torch.autograd.grad((maps[1] * weights).sum(), image)
    assert grads[None].abs().max() > 0
    torch.testing.assert_close(grads[None], grads[False], atol=1e-6, rtol=1e-4)


def test_a_float16_capture_keeps_queries_and_keys_in_float16(tiny_vit):
    x = torch.randn(2, 3, 32, 32)
    full, _ = _timm_maps(tiny_vit, x)
    half, _ = _timm_maps(tiny_vit, x, dtype=torch.float16, device="cpu")
    for i in range(len(half)):
        recipe = half.recipe(i)
        assert recipe.query.dtype == recipe.key.dtype == torch.float16
        assert half[i].dtype == torch.float16 and half.rows(i, 0).dtype == torch.float16
        torch.testing.assert_close(half[i].float(), full[i], atol=2e-3, rtol=0)


# -- transformers ----------------------------------------------------------------------------------


def _llama_config(**extra):
    from transformers import LlamaConfig

    sizes = dict(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=37,
        max_position_embeddings=512,
    )
    return LlamaConfig(**{**sizes, **extra})


def test_a_lazy_capture_keeps_queries_and_keys_not_maps():
    pytest.importorskip("transformers")
    from transformers import LlamaModel

    torch.manual_seed(0)
    model = LlamaModel(_llama_config()).eval()
    batch, tokens, layers, heads, kv_heads, dim = 1, 256, 2, 4, 2, 8
    with torch.no_grad(), capture_attention(model) as maps:
        model(torch.randint(3, 99, (batch, tokens)))
    assert all(info.rebuilt for info in maps.infos)
    maps_bytes = batch * heads * tokens * tokens * 4 * layers
    queries_and_keys = (batch * heads + batch * kv_heads) * tokens * dim * 4 * layers
    kept = maps.kept_bytes()
    assert kept < maps_bytes / 10, (kept, maps_bytes)
    assert queries_and_keys <= kept <= 1.25 * queries_and_keys, (kept, queries_and_keys)
    assert maps[0].shape == (batch, heads, tokens, tokens)  # read on demand, still the whole map
    assert maps.kept_bytes() == kept  # reading a map keeps nothing more


def _eager_attentions(model, **inputs):
    default = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            return model(**inputs, output_attentions=True, return_dict=True)
    finally:
        model.set_attn_implementation(default)


def _transformers_model(kind):
    pytest.importorskip("transformers")
    import transformers

    torch.manual_seed(0)
    if kind == "llama padding":
        return transformers.LlamaModel(_llama_config(num_key_value_heads=4))
    if kind == "mistral sliding window":
        config = transformers.MistralConfig(**_llama_config().to_dict())
        config.sliding_window = 4
        return transformers.MistralModel(config)
    if kind == "qwen2 gqa":
        config = transformers.Qwen2Config(**_llama_config(num_key_value_heads=1).to_dict())
        return transformers.Qwen2Model(config)
    if kind == "bert padding":
        config = transformers.BertConfig(
            vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
        )
        return transformers.BertModel(config)
    config = transformers.T5Config(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    return transformers.T5Model(config)


@pytest.mark.parametrize(
    "kind", ["llama padding", "mistral sliding window", "qwen2 gqa", "bert padding", "t5 position bias"]
)
def test_transformers_maps_equal_eager_output_attentions(kind):
    model = _transformers_model(kind).eval()
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (2, 10), generator=generator)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, -3:] = 0  # padding at the end of the second sequence
    inputs = {"input_ids": ids}
    if kind != "qwen2 gqa" and kind != "mistral sliding window":
        inputs["attention_mask"] = mask
    if kind.startswith("t5"):
        inputs["decoder_input_ids"] = ids[:, :6]
    reference = _eager_attentions(model, **inputs)
    with torch.no_grad():
        plain = model(**inputs).last_hidden_state
        with capture_attention(model) as maps:
            out = model(**inputs).last_hidden_state
    if kind.startswith("t5"):
        torch.testing.assert_close(
            out, plain, atol=1e-5, rtol=0
        )  # T5's attention is its own code: computed eagerly, and said so
        assert not any(info.rebuilt for info in maps.infos) and maps.info(0).eager_reason
        expected = {f"encoder.block.{i}.layer.0": reference.encoder_attentions[i] for i in range(2)} | {
            f"decoder.block.{i}.layer.0": reference.decoder_attentions[i] for i in range(2)
        }
        expected |= {f"decoder.block.{i}.layer.1": reference.cross_attentions[i] for i in range(2)}
    else:
        torch.testing.assert_close(out, plain, atol=0, rtol=0)  # the model ran its own kernels
        assert all(info.rebuilt for info in maps.infos), [info.eager_reason for info in maps.infos]
        expected = dict(zip(maps.names, reference.attentions, strict=True))
    assert sorted(expected) == sorted(maps.names)
    for path, attentions in expected.items():
        assert_equal_where_seen(maps[path], attentions)
    if kind == "mistral sliding window":  # the window is smaller than the sequence: keys are hidden
        assert bool((maps[0][:, :, -1, :5] == 0).all()) and bool((maps[0][:, :, -1, 6:] > 0).all())
    if kind == "qwen2 gqa":
        assert maps.recipe(0).key.shape[1] == 1 and maps.recipe(0).query.shape[1] == 4


# -- nn.MultiheadAttention -------------------------------------------------------------------------


MHA_CASES = {
    "batch first": dict(batch_first=True),
    "sequence first": dict(batch_first=False),
    "kdim and vdim": dict(batch_first=True, kdim=6, vdim=5),
    "key padding bool": dict(batch_first=True, padding="bool"),
    "key padding float": dict(batch_first=True, padding="float"),
    "attn mask 2d": dict(batch_first=False, attn_mask=2),
    "attn mask 3d": dict(batch_first=True, attn_mask=3),
    "unbatched": dict(batch_first=True, unbatched=True),
}


@pytest.mark.parametrize("name", MHA_CASES)
def test_multihead_attention_maps_equal_need_weights(name):
    case = MHA_CASES[name]
    torch.manual_seed(0)
    heads, dim, queries, keys, batch = 2, 8, 4, 5, 3
    module = nn.MultiheadAttention(
        dim, heads, batch_first=case["batch_first"], kdim=case.get("kdim"), vdim=case.get("vdim")
    ).eval()
    query = torch.randn(batch, queries, dim)
    key = torch.randn(batch, keys, case.get("kdim", dim))
    value = torch.randn(batch, keys, case.get("vdim", dim))
    kwargs = {}
    if "padding" in case:
        pad = torch.tensor([[False] * keys, [False] * 3 + [True] * 2, [True] * keys])  # the last: no key
        kwargs["key_padding_mask"] = (
            pad if case["padding"] == "bool" else torch.zeros(pad.shape).masked_fill(pad, -math.inf)
        )
    if case.get("attn_mask") == 2:
        kwargs["attn_mask"] = torch.rand(queries, keys) > 0.3
        kwargs["attn_mask"][:, 0] = True
    elif case.get("attn_mask") == 3:
        kwargs["attn_mask"] = torch.randn(batch * heads, queries, keys)
    if case.get("unbatched"):
        query, key, value = query[0], key[0], value[0]
    elif not case["batch_first"]:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    with torch.no_grad():
        out_plain, expected = module(
            query, key, value, need_weights=True, average_attn_weights=False, **kwargs
        )
        with capture_attention(module) as maps:
            out, _ = module(query, key, value, need_weights=False, **kwargs)
    assert maps.info(0).rebuilt
    torch.testing.assert_close(out.nan_to_num(), out_plain.nan_to_num(), atol=1e-5, rtol=0)
    expected = expected.unsqueeze(0) if case.get("unbatched") else expected
    assert_equal_where_seen(maps[0], expected)
    if "padding" in case:  # the sequence with every key padded: zero rows, as the fused kernels
        assert bool((maps[0][2] == 0).all())


def test_a_nested_tensor_encoder_call_falls_back_to_eager_weights_and_says_why():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True).eval()
    src = torch.randn(2, 6, 16)
    pad = torch.tensor([[False] * 6, [False] * 4 + [True] * 2])
    with torch.no_grad():
        expected_out = encoder(src, src_key_padding_mask=pad)
        _, expected = encoder.layers[0].self_attn(
            src, src, src, key_padding_mask=pad, need_weights=True, average_attn_weights=False
        )
        with capture_attention(encoder) as maps:
            out = encoder(src, src_key_padding_mask=pad)
    torch.testing.assert_close(out, expected_out, atol=0, rtol=0)
    info = maps.info(0)
    assert not info.rebuilt and "nested tensor" in info.eager_reason
    torch.testing.assert_close(maps[0][0], expected[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(maps[0][1, :, :4], expected[1, :, :4], atol=1e-5, rtol=0)
    with torch.no_grad(), capture_attention(encoder) as unpadded:  # no padding: no nested tensor
        encoder(src)
    assert unpadded.info(0).rebuilt


def test_a_training_module_with_dropout_warns_and_keeps_the_probabilities_before_dropout():
    torch.manual_seed(0)
    module = nn.MultiheadAttention(8, 2, dropout=0.5, batch_first=True).train()
    x = torch.randn(2, 4, 8)
    with pytest.warns(CaptureWarning, match=r"attention dropout \(p=0.5"):
        with torch.no_grad(), capture_attention(module) as maps:
            module(x, x, x)
    assert maps.info(0).rebuilt
    with torch.no_grad():
        _, expected = module.eval()(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(maps[0], expected, atol=1e-6, rtol=0)
