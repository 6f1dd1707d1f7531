"""Declared structure of transformers models, checked against what the models themselves return.

Each model runs twice on the same tiny random weights: under ``capture_attention`` with its
default attention, and with eager ``output_attentions=True``. ``maps.structured()`` must group
the maps as the output's fields do: ``encoder_attentions`` are the encoder blocks'
self-attention, ``decoder_attentions`` and ``cross_attentions`` the decoder blocks' self- and
cross-attention (one block each, T5's ``layer.0``/``layer.1`` included), ``attentions`` the
blocks of a one-stack model. Swin-family maps are scattered back onto the token grid and
compared with a scatter written here from Swin's own padding, roll and window partition.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from visualizer import capture_attention  # noqa: E402
from visualizer._adapters.hf_transformers import ADAPTER  # noqa: E402
from visualizer._structure import Windows  # noqa: E402

IDS = torch.randint(3, 90, (2, 7), generator=torch.Generator().manual_seed(0))
SEQ2SEQ = dict(
    vocab_size=99,
    d_model=32,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=37,
    decoder_ffn_dim=37,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
    decoder_start_token_id=2,
)


def run_both(model, inputs):
    """(maps under the default attention, the model's own eager output with attentions)."""
    model.eval()
    default = model.config._attn_implementation
    with torch.no_grad(), capture_attention(model) as maps:
        model(**inputs)
    assert model.config._attn_implementation == default
    model.set_attn_implementation("eager")
    with torch.no_grad():
        output = model(**inputs, output_attentions=True)
    model.set_attn_implementation(default)
    return maps, output


def assert_same(maps, tensors, what):
    assert len(maps) == len(tensors), f"{what}: {len(maps)} maps, the model returns {len(tensors)}"
    for n, (captured, expected) in enumerate(zip(maps, tensors)):
        torch.testing.assert_close(captured, expected, atol=1e-5, rtol=0, msg=f"{what}[{n}]")


def seq2seq(name):
    torch.manual_seed(0)
    if name == "t5":
        config = transformers.T5Config(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
        return transformers.T5Model(config)
    if name == "whisper":
        config = transformers.WhisperConfig(
            **{**SEQ2SEQ, "max_source_positions": 16, "max_target_positions": 32, "num_mel_bins": 16}
        )
        return transformers.WhisperModel(config)
    config_class, model_class = {
        "bart": ("BartConfig", "BartModel"),
        "marian": ("MarianConfig", "MarianModel"),
        "mbart": ("MBartConfig", "MBartModel"),
        "pegasus": ("PegasusConfig", "PegasusModel"),
    }[name]
    return getattr(transformers, model_class)(getattr(transformers, config_class)(**SEQ2SEQ))


@pytest.mark.parametrize("name", ["t5", "bart", "whisper", "marian", "mbart", "pegasus"])
def test_encoder_decoder_blocks_match_the_output_fields(name):
    model = seq2seq(name)
    if name == "whisper":
        features = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(2))
        inputs = dict(input_features=features, decoder_input_ids=IDS[:, :5])
    else:
        inputs = dict(input_ids=IDS, decoder_input_ids=IDS[:, :5])
    maps, output = run_both(model, inputs)
    structured = maps.structured()
    assert list(structured) == ["encoder", "decoder"]
    assert [set(block) for block in structured["encoder"]] == [{"self_attention"}] * 2
    assert [set(block) for block in structured["decoder"]] == [{"self_attention", "cross_attention"}] * 2
    encoder, decoder = structured["encoder"], structured["decoder"]
    assert_same([b["self_attention"] for b in encoder], output.encoder_attentions, "encoder_attentions")
    assert_same([b["self_attention"] for b in decoder], output.decoder_attentions, "decoder_attentions")
    assert_same([b["cross_attention"] for b in decoder], output.cross_attentions, "cross_attentions")
    # one decoder block holds both attentions of a layer, with the same depth
    decoder_infos = [info for info in maps.infos if info.role == "decoder"]
    assert [(info.kind, info.depth) for info in decoder_infos] == [
        ("self", 0),
        ("cross", 0),
        ("self", 1),
        ("cross", 1),
    ]
    assert len({info.block for info in decoder_infos}) == 2
    if name == "t5":  # T5's layer.0 (self) and layer.1 (cross) are ONE block
        assert decoder_infos[0].block == decoder_infos[1].block == "decoder.block.0"
    elif name in ("bart", "whisper"):
        cross = maps.info("decoder.layers.0.encoder_attn")
        assert (cross.role, cross.kind, cross.block) == ("decoder", "cross", "decoder.layers.0")


def one_stack(name):
    torch.manual_seed(0)
    common = dict(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
    )
    if name == "bert":
        return transformers.BertModel(transformers.BertConfig(**common))
    if name == "gpt2":
        return transformers.GPT2Model(transformers.GPT2Config(vocab_size=99, n_embd=32, n_layer=2, n_head=4))
    if name == "llama":
        return transformers.LlamaModel(transformers.LlamaConfig(num_key_value_heads=2, **common))
    return transformers.DebertaV2Model(transformers.DebertaV2Config(**common))


@pytest.mark.parametrize("name", ["bert", "gpt2", "llama", "deberta_v2"])
def test_one_stack_models_are_layers_matching_attentions(name):
    model = one_stack(name)
    maps, output = run_both(model, dict(input_ids=IDS))
    structured = maps.structured()
    assert list(structured) == ["layers"]
    assert [set(block) for block in structured["layers"]] == [{"self_attention"}] * 2
    assert_same([block["self_attention"] for block in structured["layers"]], output.attentions, "attentions")
    assert [info.depth for info in maps.infos] == [0, 1]
    assert all(info.role is None and info.kind == "self" for info in maps.infos)


def test_deberta_v2_goes_through_output_attentions_and_the_caller_gets_what_it_asked():
    model = one_stack("deberta_v2").eval()
    assert not type(model)._can_record_outputs
    from visualizer._adapters._hf_fallback import FallbackPayload

    found = ADAPTER.find(model, list(model.named_modules()), {}, None)
    assert [type(target.payload) for target in found] == [FallbackPayload] * 2
    with torch.no_grad():
        plain = model(IDS)
        with capture_attention(model) as maps:
            during = model(IDS)
            as_tuple = model(IDS, return_dict=False)
            asked = model(IDS, output_attentions=True)
    assert during.attentions is None and set(during.keys()) == set(plain.keys())
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(plain.to_tuple())
    torch.testing.assert_close(during.last_hidden_state, plain.last_hidden_state, atol=1e-5, rtol=0)
    assert len(asked.attentions) == 2
    for n, tensor in enumerate(asked.attentions):
        assert torch.equal(maps.calls(n)[2], tensor)
    assert [len(maps.calls(n)) for n in range(2)] == [3, 3]


# -- Swin family: windows ------------------------------------------------------------------


def swin(family, window):
    torch.manual_seed(0)
    common = dict(
        image_size=40, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 2], window_size=window
    )
    if family == "swin":
        return transformers.SwinModel(transformers.SwinConfig(**common))
    if family == "swinv2":
        return transformers.Swinv2Model(transformers.Swinv2Config(**common))
    return transformers.DonutSwinModel(transformers.DonutSwinConfig(**common))


def windows_by_hand(height, width, window, shift):
    """(windows, window^2) token indices of each window, -1 for padding, as SwinLayer cuts them."""
    grid = torch.arange(height * width).reshape(1, height, width, 1)
    pad_bottom, pad_right = (-height) % window, (-width) % window
    grid = torch.nn.functional.pad(grid, (0, 0, 0, pad_right, 0, pad_bottom), value=-1)
    if shift:
        grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
    rows, cols = grid.shape[1] // window, grid.shape[2] // window
    grid = grid.view(1, rows, window, cols, window, 1).transpose(2, 3).reshape(-1, window * window)
    return grid


def scatter_by_hand(weights, height, width, window, shift):
    positions = windows_by_hand(height, width, window, shift)
    per_image = positions.shape[0]
    batch, heads = weights.shape[0] // per_image, weights.shape[1]
    out = torch.zeros(batch, heads, height * width, height * width)
    for b in range(batch):
        for w in range(per_image):
            for i, q in enumerate(positions[w].tolist()):
                for j, k in enumerate(positions[w].tolist()):
                    if q >= 0 and k >= 0:
                        out[b, :, q, k] = weights[b * per_image + w, :, i, j]
    return out


# Window 4 pads 10 x 10 tokens to 12 x 12; 5 fits stage 2 (5 x 5 tokens) exactly, shift turned off;
# 6 shrinks to stage 2's 5 (only Swinv2 runs so: Swin's relative position bias keeps the configured
# window in transformers 5, and the model itself fails).
@pytest.mark.parametrize(
    ("family", "window"),
    [("swin", 4), ("swin", 5), ("donut-swin", 4), ("donut-swin", 5), ("swinv2", 4), ("swinv2", 6)],
)
def test_swin_windows_scatter_onto_the_token_grid(family, window):
    model = swin(family, window)
    pixels = torch.randn(2, 3, 40, 40, generator=torch.Generator().manual_seed(3))
    maps, output = run_both(model, dict(pixel_values=pixels))
    assert len(maps) == 4  # every block, though the model returns only each stage's last
    # the model's own attentions: the last block of each stage
    assert_same([maps[1], maps[3]], output.attentions, "attentions")
    # (tokens, window, shift) per block: stage 2 (5 x 5 tokens) shrinks a larger window to the
    # input and turns the shift off, as SwinLayer (at run time) and Swinv2Layer (at init) do
    small = 5 <= window
    expected = {
        0: (10, window, 0),
        1: (10, window, window // 2),
        2: (5, min(window, 5), 0),
        3: (5, min(window, 5), 0 if small else window // 2),
    }
    for n, (tokens, size, shift) in expected.items():
        layout = maps.layout(n)
        grid = -(-tokens // size)
        assert layout == Windows(
            window=(size, size), grid=(grid, grid), shift=(shift, shift), tokens=(tokens, tokens)
        )
        scattered = maps.scatter(n)
        assert scattered.shape == (2, maps[n].shape[1], tokens * tokens, tokens * tokens)
        torch.testing.assert_close(
            scattered, scatter_by_hand(maps[n], tokens, tokens, size, shift), atol=0, rtol=0
        )
        if shift == 0 and tokens % size == 0:
            torch.testing.assert_close(scattered.sum(-1), torch.ones(scattered.shape[:-1]), atol=1e-5, rtol=0)
