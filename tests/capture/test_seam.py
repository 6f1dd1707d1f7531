"""Editors and gradient taps at the edit point, checked against what they must equal independently:
zeroing a head's output equals zeroing that head's slice of the output projection's input (a
pre-hook written here), a gradient tap sees eager autograd's gradient of the per-head output."""

import copy
import os

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_bert, tiny_llama

from visualizer import capture_attention
from visualizer._adapters._seam import EditPointError, Seam
from visualizer._sessions import SESSIONS

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class ZeroHead:
    """The tests' editor: zero one head of the named modules (every module when ``names`` is None)."""

    def __init__(self, head: int, names=None) -> None:
        self.head, self.names, self.calls = head, names, []

    def edit(self, call):
        self.calls.append(call)
        if self.names is not None and call.target.name not in self.names:
            return None
        out = call.output.clone()
        out[:, self.head] = 0
        return out


class Identity:
    def __init__(self) -> None:
        self.calls = 0

    def edit(self, call):
        self.calls += 1
        return call.output.clone()


class KeepGradient:
    def __init__(self, detach_scores: bool = False) -> None:
        self.detach_scores = detach_scores
        self.grads: dict[str, torch.Tensor] = {}

    def gradient(self, call, grad) -> None:
        self.grads[call.target.name] = grad


def _zero_projection_input(projection, head: int, head_dim: int, transposed: bool = False):
    """A pre-hook on the output projection that zeroes head ``head``'s slice of its input."""

    def pre(module, args):
        x = args[0].clone()
        x[..., head * head_dim : (head + 1) * head_dim] = 0
        return (x, *args[1:])

    return projection.register_forward_pre_hook(pre)


def _on(model, implementation: str):
    model.set_attn_implementation(implementation)
    return model.eval()


def _vit():
    import timm

    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, depth=2
    ).eval()


def _bert():
    return _on(tiny_bert(), "sdpa")


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return _on(GPT2LMHeadModel(config), "sdpa")


def _bart():
    from transformers import BartConfig, BartModel

    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=100,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
    )
    return _on(BartModel(config), "sdpa")


# (model, inputs, attention module, its output projection, heads)
CASES = {
    "timm fused": (_vit, lambda: (torch.randn(2, 3, 32, 32),), "blocks.1.attn", "blocks.1.attn.proj", 3),
    "bert sdpa": (
        _bert,
        lambda: (torch.randint(0, 100, (2, 7)),),
        "encoder.layer.1.attention.self",
        "encoder.layer.1.attention.output.dense",
        4,
    ),
    "gpt2 sdpa": (
        _gpt2,
        lambda: (torch.randint(0, 100, (2, 9)),),
        "transformer.h.0.attn",
        "transformer.h.0.attn.c_proj",
        4,
    ),
    "llama gqa": (
        lambda: tiny_llama(attn_implementation="sdpa"),
        lambda: (torch.randint(0, 100, (2, 9)),),
        "model.layers.1.self_attn",
        "model.layers.1.self_attn.o_proj",
        4,
    ),
}


def _output(result):
    for name in ("logits", "last_hidden_state"):
        if hasattr(result, name):
            return getattr(result, name)
    return result


def _eager(model):
    """The model on its eager path: timm's fused_attn off, transformers' eager implementation."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    for module in model.modules():
        if isinstance(getattr(module, "fused_attn", None), bool):
            module.fused_attn = False
    return model


@pytest.mark.parametrize("path", ["kernel", "eager"])
@pytest.mark.parametrize("case", list(CASES))
def test_zeroing_a_head_equals_zeroing_its_slice_of_the_projection_input(case, path):
    build, inputs, name, projection, heads = CASES[case]
    model = build() if path == "kernel" else _eager(build())
    args = inputs()
    dim = dict(model.named_modules())[projection]
    in_features = dim.weight.shape[0] if type(dim).__name__ == "Conv1D" else dim.in_features
    head_dim = in_features // heads
    with torch.no_grad():
        plain = _output(model(*args))
        handle = _zero_projection_input(dim, 2, head_dim)
        try:
            expected = _output(model(*args))
        finally:
            handle.remove()
        editor = ZeroHead(2, names={name})
        with Seam(model, editors=[editor], modules=[name]) as seam:
            edited = _output(model(*args))
        identity = Identity()
        with Seam(model, editors=[identity]):
            same = _output(model(*args))
    assert [target.name for target in seam.targets] == [name]
    assert len(editor.calls) == 1 and editor.calls[0].output.shape[1] == heads
    if path == "kernel":  # the event carries what the kernel got
        assert editor.calls[0].source == "kernel" and editor.calls[0].value is not None
    else:
        assert editor.calls[0].source == "projection" and editor.calls[0].query is None
    assert (expected - plain).abs().max() > 1e-4  # the head matters, so the comparison can fail
    torch.testing.assert_close(edited, expected, atol=1e-5, rtol=0)
    assert identity.calls >= 2
    assert torch.equal(same, plain)  # the kernel path is unchanged: bit-identical


def test_zeroing_a_head_on_a_packed_grouped_query_decoding_step():
    """A decoding step with a padding mask: transformers folds query heads into query positions
    (pack_gqa); the editor still sees (batch, heads, 1, head dim)."""
    model = tiny_llama(attn_implementation="sdpa")
    ids = torch.randint(0, 100, (2, 6))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 0] = 0
    with torch.no_grad():
        prefill = model(ids, attention_mask=mask[:, :6], use_cache=True)
        step = torch.randint(0, 100, (2, 1))

        def decode(**kw):
            cache = copy.deepcopy(prefill.past_key_values)
            return model(step, attention_mask=mask, past_key_values=cache, **kw).logits

        projection = model.model.layers[0].self_attn.o_proj
        handle = _zero_projection_input(projection, 3, 16)
        try:
            expected = decode()
        finally:
            handle.remove()
        editor = ZeroHead(3)
        with Seam(model, editors=[editor], modules=["model.layers.0.self_attn"]):
            edited = decode()
    assert editor.calls[0].packed and editor.calls[0].output.shape == (2, 4, 1, 16)
    torch.testing.assert_close(edited, expected, atol=1e-5, rtol=0)


def test_cross_attention_of_an_encoder_decoder():
    model = _bart()
    ids = torch.randint(0, 100, (2, 7))
    name = "decoder.layers.0.encoder_attn"
    with torch.no_grad():
        plain = model(ids, decoder_input_ids=ids[:, :5]).last_hidden_state
        handle = _zero_projection_input(model.decoder.layers[0].encoder_attn.out_proj, 1, 8)
        try:
            expected = model(ids, decoder_input_ids=ids[:, :5]).last_hidden_state
        finally:
            handle.remove()
        with Seam(model, editors=[ZeroHead(1)], modules=[name]):
            edited = model(ids, decoder_input_ids=ids[:, :5]).last_hidden_state
    assert (expected - plain).abs().max() > 1e-4
    torch.testing.assert_close(edited, expected, atol=1e-5, rtol=0)


def _eager_head_output_grad(model, images, block: int):
    """Eager autograd's gradient of block ``block``'s per-head output (timm, fused kernel off)."""
    attn = model.blocks[block].attn
    kept = {}

    def pre(module, args):
        args[0].retain_grad()
        kept["x"] = args[0]

    attn.fused_attn = False
    handle = attn.proj.register_forward_pre_hook(pre)
    try:
        model(images).pow(2).sum().backward()
    finally:
        handle.remove()
        attn.fused_attn = True
    grad = kept["x"].grad  # (batch, tokens, heads x head dim)
    return grad.reshape(*grad.shape[:2], attn.num_heads, -1).transpose(1, 2)


@pytest.mark.parametrize("path", ["kernel", "eager"])
def test_a_gradient_tap_sees_eager_autograds_gradient_of_the_per_head_output(path):
    model = _vit()
    images = torch.randn(2, 3, 32, 32)
    expected = _eager_head_output_grad(model, images, 1)
    model.zero_grad()
    if path == "eager":
        _eager(model)
    tap = KeepGradient()
    with Seam(model, taps=[tap]):
        out = model(images)
        out.pow(2).sum().backward()
    assert set(tap.grads) == {"blocks.0.attn", "blocks.1.attn"}
    torch.testing.assert_close(tap.grads["blocks.1.attn"], expected, atol=1e-5, rtol=1e-5)


def test_detached_scores_leave_the_output_and_send_gradients_through_the_values_only():
    model = _vit()
    images = torch.randn(2, 3, 32, 32)
    plain = model(images)
    plain.pow(2).sum().backward()
    qkv = model.blocks[1].attn.qkv.weight
    dim = qkv.shape[1]
    assert qkv.grad[: 2 * dim].abs().max() > 0
    model.zero_grad()
    tap = KeepGradient(detach_scores=True)
    with Seam(model, taps=[tap]):
        out = model(images)
        out.pow(2).sum().backward()
    assert torch.equal(out, plain)
    assert torch.count_nonzero(qkv.grad[: 2 * dim]) == 0  # queries and keys get no gradient
    assert qkv.grad[2 * dim :].abs().max() > 0  # the values do


def test_modules_without_an_edit_point_are_refused_by_name():
    import timm

    torch.manual_seed(0)
    scaled = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, depth=1, scale_attn_norm=True
    ).eval()
    with pytest.raises(EditPointError, match=r"blocks\.0\.attn .*norm .*scale_norm"):
        Seam(scaled, editors=[Identity()]).open()
    biased = torch.nn.Sequential(torch.nn.MultiheadAttention(16, 2, add_bias_kv=True))
    with pytest.raises(EditPointError, match=r"0 \(nn\.MultiheadAttention\): its learned key bias"):
        Seam(biased, editors=[Identity()]).open()
    from transformers import BitNetConfig, BitNetModel

    bitnet = BitNetModel(
        BitNetConfig(
            vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
        )
    )
    with pytest.raises(
        EditPointError, match=r"- layers\.0\.self_attn \(BitNetAttention\) applies attn_sub_norm"
    ):
        Seam(bitnet, editors=[Identity()]).open()
    eager = _eager(_bert())
    with Seam(eager, taps=[KeepGradient()]) as seam:  # an eager path has an edit point
        assert len(seam.targets) == 2
    with pytest.raises(EditPointError, match="'eager'.*cannot detach its queries and keys"):
        Seam(eager, taps=[KeepGradient(detach_scores=True)]).open()
    assert not hasattr(F.scaled_dot_product_attention, "__wrapped__")  # nothing was attached


def test_bad_editors_and_arguments_raise_clear_errors():
    model = _vit()
    with pytest.raises(TypeError, match="edit"):
        Seam(model, editors=[object()])
    with pytest.raises(TypeError, match="detach_scores"):
        Seam(model, taps=[type("T", (), {"gradient": lambda self, c, g: None})()])
    with pytest.raises(ValueError, match="at least one"):
        Seam(model)
    with pytest.raises(KeyError, match="blocks.9.attn"):
        Seam(model, editors=[Identity()], modules=["blocks.9.attn"]).open()

    class Wrong:
        def edit(self, call):
            return call.output[:, :1]

    with (
        Seam(model, editors=[Wrong()]),
        pytest.raises(ValueError, match=r"Wrong\.edit returned .*shaped like"),
    ):
        model(torch.randn(1, 3, 32, 32))


def test_an_editor_keeps_working_when_a_capture_switches_the_kernel_off_but_a_detaching_tap_raises():
    model = _vit()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        handle = _zero_projection_input(model.blocks[1].attn.proj, 2, 64)
        expected = model(images)
        handle.remove()
        with Seam(model, editors=[ZeroHead(2, names={"blocks.1.attn"})]):
            with capture_attention(model, lazy=False) as maps:  # switches fused_attn off
                edited = model(images)
    torch.testing.assert_close(edited, expected, atol=1e-5, rtol=0)
    assert len(maps) == 2 and not maps.infos[0].rebuilt
    with Seam(model, taps=[KeepGradient(detach_scores=True)]):
        with capture_attention(model, lazy=False):
            with pytest.raises(
                RuntimeError,
                match="made no call to .*scaled_dot_product_attention, so the editors and gradient taps",
            ):
                model(images)


#: The parts captures and seams keep on a timm model's objects in the registry of sessions.
PARTS = ("kernel", "copy guard", "held fused_attn")


def _hooks(model) -> list:
    return [(name, len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in model.named_modules()]


@pytest.mark.parametrize("order", ["nested", "overlapping", "capture inside"])
def test_seams_and_captures_nest_and_overlap_and_leave_everything_as_before(order):
    model = _vit()
    images = torch.randn(1, 3, 32, 32)
    before = _hooks(model)
    sdpa = F.scaled_dot_product_attention
    with torch.no_grad():
        plain = model(images)
        ablated_expected = None
        handle = _zero_projection_input(model.blocks[0].attn.proj, 0, 64)
        ablated_expected = model(images)
        handle.remove()
        first = Seam(model, editors=[ZeroHead(0, names={"blocks.0.attn"})])
        capture = capture_attention(model)
        if order == "nested":
            first.open()
            maps = capture.start()
            out = model(images)
            capture.stop()
            first.close()
        elif order == "overlapping":
            maps = capture.start()
            first.open()
            out = model(images)
            capture.stop()
            again = model(images)
            first.close()
            torch.testing.assert_close(again, ablated_expected, atol=1e-5, rtol=0)
        else:
            first.open()
            with pytest.raises(ZeroDivisionError):
                with capture:
                    model(images)
                    1 / 0
            maps = capture.maps
            out = model(images)
            first.close()
        after = model(images)
    assert len(maps) == 2 and maps[0].shape == (1, 3, 5, 5)
    torch.testing.assert_close(out, ablated_expected, atol=1e-5, rtol=0)
    assert torch.equal(after, plain)
    assert _hooks(model) == before
    assert F.scaled_dot_product_attention is sdpa
    assert model.blocks[0].attn.fused_attn is True
    assert all(SESSIONS.get(module, name) is None for module in model.modules() for name in PARTS)
    assert not SESSIONS.patched("sdpa wrapper")


def test_a_seam_closes_after_an_exception_and_survives_a_deep_copy():
    model = _vit()
    before = _hooks(model)
    sdpa = F.scaled_dot_product_attention
    with pytest.raises(ZeroDivisionError):
        with Seam(model, editors=[Identity()]):
            model(torch.randn(1, 3, 32, 32))
            1 / 0
    assert _hooks(model) == before and F.scaled_dot_product_attention is sdpa
    images = torch.randn(1, 3, 32, 32)
    editor = ZeroHead(1)
    with torch.no_grad(), Seam(model, editors=[editor]):
        twin = copy.deepcopy(model)
        edited = model(images)
        assert len(editor.calls) == 2
        copied = twin(images)  # the copy runs without the seam
        assert len(editor.calls) == 2
    assert _hooks(twin) == before
    with torch.no_grad():
        assert torch.equal(copied, model(images))
        assert not torch.equal(edited, copied)


def _zeroed_out_proj_columns(model, module_name: str, head: int):
    """A copy of ``model`` whose MultiheadAttention ``module_name`` has head ``head``'s columns of
    out_proj zeroed: the same as zeroing that head's slice of the projection's input."""
    twin = copy.deepcopy(model)
    module = dict(twin.named_modules())[module_name]
    width = module.embed_dim // module.num_heads
    with torch.no_grad():
        module.out_proj.weight[:, head * width : (head + 1) * width] = 0
    return twin


@pytest.mark.parametrize("grad", [False, True])
def test_multihead_attention_fast_paths_included(grad):
    """nn.TransformerEncoder under eval + no_grad takes torch's fused fast paths; with an editor
    on, the layer goes through multi_head_attention_forward's kernel call instead."""
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, dropout=0.0)
    model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 5, 16)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[1, 3:] = True
    twin = _zeroed_out_proj_columns(model, "layers.1.self_attn", 2)
    with torch.set_grad_enabled(grad):
        plain = model(x, src_key_padding_mask=padding)
        expected = twin(x, src_key_padding_mask=padding)
        editor = ZeroHead(2, names={"layers.1.self_attn"})
        with Seam(model, editors=[editor]):
            assert torch.backends.mha.get_fastpath_enabled() is False
            edited = model(x, src_key_padding_mask=padding)
        after = model(x, src_key_padding_mask=padding)
    assert torch.backends.mha.get_fastpath_enabled() is True
    assert len(editor.calls) == 2 and editor.calls[0].source == "kernel"
    keep = ~padding[..., None]
    assert ((expected - plain) * keep).abs().max() > 1e-4
    torch.testing.assert_close(edited * keep, expected * keep, atol=1e-5, rtol=0)
    torch.testing.assert_close(after, plain, atol=0, rtol=0)


def test_multihead_attention_still_returns_the_weights_the_caller_asked_for():
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    model = torch.nn.Sequential()
    model.add_module("attn", mha)
    q, kv = torch.randn(2, 3, 16), torch.randn(2, 6, 16)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[0, 4:] = True
    twin = _zeroed_out_proj_columns(model, "attn", 1)
    with torch.no_grad():
        for kwargs in ({}, {"average_attn_weights": False}, {"need_weights": False}):
            out, weights = mha(q, kv, kv, key_padding_mask=mask, **kwargs)
            expected, _ = twin.attn(q, kv, kv, key_padding_mask=mask, **kwargs)
            with Seam(model, editors=[ZeroHead(1)]), capture_attention(model, lazy=False) as maps:
                edited, edited_weights = mha(q, kv, kv, key_padding_mask=mask, **kwargs)
            torch.testing.assert_close(edited, expected, atol=1e-5, rtol=0)
            if weights is None:
                assert edited_weights is None
            else:
                torch.testing.assert_close(edited_weights, weights, atol=1e-6, rtol=0)
            _, full = mha(q, kv, kv, key_padding_mask=mask, average_attn_weights=False)
            torch.testing.assert_close(maps[0], full, atol=1e-6, rtol=0)
        unbatched, weights = mha(q[0], kv[0], kv[0])
        with Seam(model, editors=[Identity()]):
            again, rebuilt = mha(q[0], kv[0], kv[0])
    torch.testing.assert_close(again, unbatched, atol=1e-6, rtol=0)
    torch.testing.assert_close(rebuilt, weights, atol=1e-6, rtol=0)


def _state(model) -> tuple:
    return (
        _hooks(model),
        F.scaled_dot_product_attention,
        torch.backends.mha.get_fastpath_enabled(),
        [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")],
        [name for name in ("__deepcopy__", "__reduce_ex__") for m in model.modules() if name in vars(m)],
    )


def test_captures_editors_and_taps_overlap_in_every_order():
    """Open a capture, a seam with an editor and a seam with a gradient tap in every order, close
    them in every order: while all three are open the output is the ablated one, the capture has
    its maps and the tap its gradients; after the last one, everything is as before."""
    import itertools

    model = _vit()
    images = torch.randn(1, 3, 32, 32, requires_grad=True)
    before = _state(model)
    handle = _zero_projection_input(model.blocks[1].attn.proj, 1, 64)
    expected = model(images).detach()
    handle.remove()
    for opened in itertools.permutations(range(3)):
        for closed in itertools.permutations(range(3)):
            tap = KeepGradient()
            capture = capture_attention(model)
            seams = [Seam(model, editors=[ZeroHead(1, names={"blocks.1.attn"})]), Seam(model, taps=[tap])]
            starts = [capture.start, seams[0].open, seams[1].open]
            stops = [capture.stop, seams[0].close, seams[1].close]
            for index in opened:
                starts[index]()
            out = model(images)
            out.sum().backward()
            for index in closed:
                stops[index]()
            torch.testing.assert_close(out.detach(), expected, atol=1e-5, rtol=0)
            assert len(capture.maps) == 2 and set(tap.grads) == {"blocks.0.attn", "blocks.1.attn"}
            assert _state(model) == before, (opened, closed)


def test_an_exception_inside_a_multihead_seam_restores_the_fast_path():
    torch.manual_seed(0)
    model = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 1)
    before = _state(model)
    with pytest.raises(ZeroDivisionError), Seam(model, editors=[Identity()]):
        model(torch.randn(1, 3, 16))
        1 / 0
    assert _state(model) == before and torch.backends.mha.get_fastpath_enabled()


def test_pickling_during_a_seam_gives_the_model_without_it():
    import io

    model = _vit()
    images = torch.randn(1, 3, 32, 32)
    editor = ZeroHead(0)
    with torch.no_grad(), Seam(model, editors=[editor]):
        buffer = io.BytesIO()
        torch.save(model, buffer)
        edited = model(images)
    buffer.seek(0)
    twin = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        assert torch.equal(twin(images), model(images))
        assert not torch.equal(edited, model(images))
    assert _hooks(twin) == _hooks(model)


def test_a_seam_edits_the_calls_of_every_thread():
    import threading

    model = _vit()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        handle = _zero_projection_input(model.blocks[0].attn.proj, 2, 64)
        expected = model(images)
        handle.remove()
        results = {}
        with Seam(model, editors=[ZeroHead(2, names={"blocks.0.attn"})]):
            workers = [
                threading.Thread(target=lambda i=i: results.__setitem__(i, model(images))) for i in range(3)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
    assert len(results) == 3
    for out in results.values():
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
