"""maps.generation(): a ``model.generate`` run with a KV cache, stitched into one causal map per layer.

The reference is transformers' own eager attention: ``generate(..., output_attentions=True,
return_dict_in_generate=True)`` gives one map per step (the prefill's, then one row per
generated token), placed here in one causal map (prefill rows first, columns beyond a step's
keys zero). The capture runs the model on sdpa, keeping the kernel; the keys of the cache are
kept once per layer (each step's keys extend the previous step's), which the kept bytes show.
"""

import pytest
import torch
from tiny_models import tiny_llama

from visualizer import capture_attention

PAD = 0


def _llama():
    # Grouped-query attention (LLAMA_SIZES): decoding steps are packed for sdpa.
    return tiny_llama(max_position_embeddings=128, pad_token_id=PAD)


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=100,
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=2,
    )
    return GPT2LMHeadModel(config).eval()


MODELS = {"llama": _llama, "gpt2": _gpt2}


def _inputs(batch: int):
    """input_ids and attention_mask, the first sequence left-padded when there are two."""
    ids = torch.tensor([[PAD, PAD, 11, 12, 13, 14], [21, 22, 23, 24, 25, 26]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    if batch == 1:
        return ids[1:], mask[1:]
    return ids, mask


def _generate(model, ids, mask, new_tokens: int, **extra):
    with torch.no_grad():
        return model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=PAD,
            **extra,
        )


def _eager_reference(model, ids, mask, new_tokens: int, **extra):
    model.set_attn_implementation("eager")
    try:
        return _generate(
            model, ids, mask, new_tokens, output_attentions=True, return_dict_in_generate=True, **extra
        )
    finally:
        model.set_attn_implementation("sdpa")


def _stitched(steps, layer: int):
    """The eager per-step maps of one layer in one causal map (written here, independently)."""
    total = sum(step[layer].shape[2] for step in steps)
    first = steps[0][layer]
    out = torch.zeros(first.shape[0], first.shape[1], total, total, dtype=first.dtype)
    row = 0
    for step in steps:
        weights = step[layer]
        assert not weights[..., total:].any()  # (a static cache's slots beyond the tokens: no weight)
        weights = weights[..., :total]
        out[:, :, row : row + weights.shape[2], : weights.shape[3]] = weights
        row += weights.shape[2]
    return out


def _seen(mask, total: int):
    """(batch, total) bool: query rows that see at least one key (left padding sees none)."""
    full = torch.cat([mask, torch.ones(mask.shape[0], total - mask.shape[1], dtype=mask.dtype)], dim=1)
    return torch.cummax(full, dim=1).values.bool()


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("batch", [1, 2])
def test_generation_is_the_eager_steps_stitched(name, batch):
    model = MODELS[name]()
    ids, mask = _inputs(batch)
    reference = _eager_reference(model, ids, mask, 5)
    with capture_attention(model) as maps:
        sequences = _generate(model, ids, mask, 5)
    assert torch.equal(sequences, reference.sequences)  # the capture changes nothing generated
    assert all(info.rebuilt for info in maps.infos)
    total = ids.shape[1] + 4  # the last generated token is never fed back
    seen = _seen(mask, total)
    for layer in range(2):
        expected = _stitched(reference.attentions, layer)
        got = maps.generation(layer)
        assert got.shape == (batch, expected.shape[1], total, total)
        for b in range(batch):
            torch.testing.assert_close(got[b][:, seen[b]], expected[b][:, seen[b]], atol=1e-6, rtol=1e-5)
            assert not got[b][:, ~seen[b]].any()  # padding rows that see no key: zero, as the kernel
        assert not got.triu(diagonal=1).any()  # causal
    if batch == 2:
        assert (~seen).sum() == 2


@pytest.mark.parametrize("batch", [1, 2])
def test_a_static_cache_hands_every_slot_to_the_kernel(batch):
    """cache_implementation="static": each step's keys are all the cache's slots, the unwritten
    ones masked; the stitched map keeps the run's tokens."""
    model = _llama()
    ids, mask = _inputs(batch)
    reference = _eager_reference(model, ids, mask, 5, cache_implementation="static")
    with capture_attention(model) as maps:
        sequences = _generate(model, ids, mask, 5, cache_implementation="static")
    assert torch.equal(sequences, reference.sequences)
    assert maps.shape(0, call=1)[-1] > ids.shape[1] + 1  # more keys than tokens so far: the static slots
    total = ids.shape[1] + 4
    seen = _seen(mask, total)
    for layer in range(2):
        expected, got = _stitched(reference.attentions, layer), maps.generation(layer)
        assert got.shape == (batch, 4, total, total)
        for b in range(batch):
            torch.testing.assert_close(got[b][:, seen[b]], expected[b][:, seen[b]], atol=1e-6, rtol=1e-5)


def test_calls_dropped_by_max_calls_are_named():
    model = _llama()
    ids, mask = _inputs(1)
    with capture_attention(model, max_calls=3) as maps:
        _generate(model, ids, mask, 5)
    with pytest.raises(ValueError, match="max_calls dropped the 2 oldest call"):
        maps.generation(0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_eager_capture_stitches_its_maps_too(name):
    model = MODELS[name]()
    ids, mask = _inputs(2)
    reference = _eager_reference(model, ids, mask, 4)
    with capture_attention(model, lazy=False) as maps:
        sequences = _generate(model, ids, mask, 4)
    assert torch.equal(sequences, reference.sequences)
    assert not any(info.rebuilt for info in maps.infos)
    seen = _seen(mask, ids.shape[1] + 3)
    for layer in range(2):
        expected, got = _stitched(reference.attentions, layer), maps.generation(layer)
        for b in range(2):
            torch.testing.assert_close(got[b][:, seen[b]], expected[b][:, seen[b]], atol=1e-6, rtol=1e-5)


def test_rows_and_heads_without_building_the_rest():
    model = _llama()
    ids, mask = _inputs(2)
    with capture_attention(model) as maps:
        _generate(model, ids, mask, 5)
    whole = maps.generation(1)
    same = dict(atol=1e-7, rtol=0)  # (fewer rows see fewer keys: the sums differ in the last bits)
    torch.testing.assert_close(maps.generation(1, rows=slice(4, 9)), whole[:, :, 4:9], **same)
    torch.testing.assert_close(maps.generation(1, rows=[8, 0, 6]), whole[:, :, [8, 0, 6]], **same)
    torch.testing.assert_close(maps.generation(1, rows=-1), whole[:, :, -1:], **same)
    part = maps.generation(1, rows=torch.tensor([7]), heads=[3, 1])
    torch.testing.assert_close(part, whole[:, [3, 1], 7:8], **same)
    with pytest.raises(IndexError, match="query row 10 is out of range"):
        maps.generation(1, rows=10)


def _key_bytes(maps) -> int:
    """Bytes of the kept keys alone, each storage once."""
    seen = {}
    for layer in range(len(maps)):
        for call in range(len(maps.calls(layer))):
            key = maps.recipe(layer, call).key
            seen[key.untyped_storage().data_ptr()] = key.untyped_storage().nbytes()
    return sum(seen.values())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_kept_bytes_grow_linearly_with_the_steps(name):
    model = MODELS[name]()
    ids, mask = _inputs(2)
    kept, keys, per_step = {}, {}, {}
    for new_tokens in (8, 16):
        with capture_attention(model) as maps:
            _generate(model, ids, mask, new_tokens)
        kept[new_tokens], keys[new_tokens] = maps.kept_bytes(), _key_bytes(maps)
        recipes = [maps.recipe(0, call) for call in range(new_tokens)]
        per_step[new_tokens] = sum(r.key.numel() * r.key.element_size() for r in recipes)
        stores = {r.key.untyped_storage().data_ptr() for r in recipes}
        assert len(stores) == 1  # one store of keys per layer, every step a view of it
    prompt = ids.shape[1]
    quadratic = sum(range(prompt, prompt + 16)) / sum(range(prompt, prompt + 8))  # keys kept per step
    linear = (prompt + 15) / (prompt + 7)
    assert per_step[16] / per_step[8] == pytest.approx(quadratic)  # what storing every step's keys takes
    assert keys[16] / keys[8] <= 2 * linear  # the store doubles its buffer: at most 2x the keys
    assert kept[16] / kept[8] < 0.75 * quadratic


def test_keys_that_do_not_extend_the_store_are_kept_whole():
    """A cache that drops keys (cropped here, as a sliding window would) breaks the prefix: the
    call keeps its keys whole, its map is still exact, and generation() says the calls are no run."""
    from transformers import DynamicCache

    model = _llama()
    ids = torch.tensor([[21, 22, 23, 24, 25, 26]])
    with torch.no_grad(), capture_attention(model) as maps:
        cache = DynamicCache(config=model.config)
        model(input_ids=ids, past_key_values=cache, use_cache=True)
        cache.crop(-2)  # keys 4 and 5 dropped
        model(input_ids=ids[:, 4:5], past_key_values=cache, use_cache=True)
    first, second = maps.recipe(0, 0), maps.recipe(0, 1)
    assert second.key.shape[2] == 5
    assert first.key.untyped_storage().data_ptr() != second.key.untyped_storage().data_ptr()
    torch.testing.assert_close(second.key[:, :, :4], first.key[:, :, :4])  # the same first keys, kept twice
    model.set_attn_implementation("eager")
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        model(input_ids=ids, past_key_values=cache, use_cache=True)
        cache.crop(-2)
        eager = model(input_ids=ids[:, 4:5], past_key_values=cache, use_cache=True, output_attentions=True)
    model.set_attn_implementation("sdpa")
    torch.testing.assert_close(maps[0, 1], eager.attentions[0], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="call 1 sees 5 keys, but the calls of its run computed 7 queries"):
        maps.generation(0)


def test_two_runs_in_one_capture():
    model = _llama()
    ids, mask = _inputs(1)
    with capture_attention(model) as maps:
        _generate(model, ids, mask, 3)
        _generate(model, ids[:, 2:], mask[:, 2:], 2)
    with pytest.raises(ValueError, match="2 generation runs"):
        maps.generation(0)
    assert maps.generation(0, run=0).shape == (1, 4, 8, 8)
    assert maps.generation(0, run=-1).shape == (1, 4, 5, 5)
    with torch.no_grad(), capture_attention(model) as alone:
        _generate(model, ids[:, 2:], mask[:, 2:], 2)
    assert torch.equal(maps.generation(0, run=1), alone.generation(0))
    with pytest.raises(IndexError, match="run 2 is out of range"):
        maps.generation(0, run=2)


DIM = 32


def test_shared_keys_rebuild_the_same_maps():
    """share_keys() on hand-made recipes: extending keys share one store; any other keys start
    their own; a shared recipe copies (to, compact, detach) as one that owns its keys."""
    from visualizer._generation import share_keys
    from visualizer._lazy import Recipe

    torch.manual_seed(0)
    keys = torch.randn(1, 1, 6, DIM)
    prefill = Recipe(torch.randn(1, 2, 4, DIM), keys[:, :, :4].clone(), causal=True)
    step = Recipe(torch.randn(1, 2, 1, DIM), keys[:, :, :5].clone())
    store, shared_prefill = share_keys(None, prefill)
    same, shared_step = share_keys(store, step)
    assert same is store and store.length == 5
    for original, shared in ((prefill, shared_prefill), (step, shared_step)):
        assert torch.equal(shared.key, original.key)
        assert torch.equal(shared.full(), original.full())
        written = torch.softmax(
            (
                original.query @ original.key.repeat_interleave(2, dim=1).transpose(-2, -1) / DIM**0.5
            ).masked_fill(
                ~torch.ones(original.shape[2:], dtype=torch.bool).tril(original.shape[3] - original.shape[2]),
                float("-inf"),
            ),
            dim=-1,
        )
        torch.testing.assert_close(shared.full(), written)
        assert torch.equal(shared.to(dtype=torch.float64).full(), original.to(dtype=torch.float64).full())
        own = shared.compact().key
        assert own.untyped_storage().nbytes() == own.numel() * own.element_size()
        assert torch.equal(shared.detach().full(), original.full())
    changed = keys[:, :, :6].clone()
    changed[0, 0, 2, 0] += 1.0  # an earlier key differs: not an extension
    other, kept = share_keys(store, Recipe(torch.randn(1, 2, 1, DIM), changed))
    assert other is not store and torch.equal(kept.key, changed) and store.length == 5
    graph = Recipe(torch.randn(1, 2, 1, DIM), keys.clone().requires_grad_())
    unchanged, whole = share_keys(other, graph)
    assert unchanged is other and whole is graph  # keys with an autograd graph are kept as they are


def test_an_encoder_decoder_stitches_the_decoder_self_attention():
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=100,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    model = BartForConditionalGeneration(config).eval()
    ids, mask = _inputs(2)
    reference = _eager_reference(model, ids, mask, 4)
    with capture_attention(model) as maps:
        sequences = _generate(model, ids, mask, 4)
    assert torch.equal(sequences, reference.sequences)
    decoder = [i for i, info in enumerate(maps.infos) if info.role == "decoder" and info.kind == "self"]
    assert len(decoder) == 2
    for layer, position in enumerate(decoder):
        expected = _stitched(reference.decoder_attentions, layer)
        torch.testing.assert_close(maps.generation(position), expected, atol=1e-6, rtol=1e-5)
    cross = next(i for i, info in enumerate(maps.infos) if info.kind == "cross")
    with pytest.raises(ValueError, match="is cross-attention"):
        maps.generation(cross)


def test_beam_search_steps_are_stitched_by_beam_slot():
    """Beams reorder the cache between steps: those steps' keys do not extend the store and are
    kept whole; the map is still the eager steps, row for row (batch rows are beam slots)."""
    model = _llama()
    ids, mask = _inputs(1)
    reference = _eager_reference(model, ids, mask, 5, num_beams=3)
    with capture_attention(model) as maps:
        sequences = _generate(model, ids, mask, 5, num_beams=3)
    assert torch.equal(sequences, reference.sequences)
    for layer in range(2):
        expected = _stitched(reference.attentions, layer)
        torch.testing.assert_close(maps.generation(layer), expected, atol=1e-6, rtol=1e-5)
