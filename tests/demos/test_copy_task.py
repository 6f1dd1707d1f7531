"""The copy-task demo: a small nn.Transformer trained here learns to copy, with diagonal cross-attention."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from visualizer.demos import CopyTask, diagonal_mass, train_copy_task


@pytest.fixture(scope="module")
def task() -> CopyTask:
    """The default demo, trained once for this module (a few seconds)."""
    return train_copy_task(seed=0)


@pytest.fixture(scope="module")
def held_out(task) -> torch.Tensor:
    return task.held_out(256)


def test_last_cross_attention_is_diagonal(task, held_out):
    maps = task.cross_attention(held_out)
    s = task.settings
    assert maps.shape == (256, s.nhead, s.seq_len, s.seq_len)
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))
    assert diagonal_mass(maps) >= 0.9
    for head in range(s.nhead):
        assert diagonal_mass(maps[:, head]) >= 0.8, f"head {head} is not diagonal"


def test_ablating_the_diagonal_cross_attention_heads_breaks_the_copy(task, held_out):
    """The maps say the copy reads the source through the diagonal heads; ablating them shows it.
    (Over seeds 0-2 both heads turn diagonal, each alone is partly redundant: one ablated keeps
    72-100 % of the tokens, both leave about 6 %, chance being 1 / 16.)"""
    from visualizer import ablate

    maps = task.cross_attention(held_out)
    diagonal = [head for head in range(maps.shape[1]) if diagonal_mass(maps[:, head]) >= 0.5]
    assert diagonal
    assert (task.predict(held_out) == held_out).float().mean() >= 0.95
    with ablate(task.model, {"transformer.decoder.layers.0.multihead_attn": diagonal}):
        broken = (task.predict(held_out) == held_out).float().mean()
    assert broken <= 0.2, broken
    assert (task.predict(held_out) == held_out).float().mean() >= 0.95  # as before, outside the block


def test_untrained_cross_attention_is_not_diagonal():
    task = train_copy_task(seed=0, steps=0)
    assert task.losses == [] and sorted(task.snapshots) == [0]
    assert diagonal_mass(task.cross_attention(task.held_out(64))) < 0.5


def test_it_copies(task, held_out):
    assert not task.model.training
    with torch.no_grad():
        logits = task.model(held_out, task.decoder_input(held_out))
    assert logits.shape == (256, task.settings.seq_len, task.settings.vocab_size)
    assert (logits.argmax(-1) == held_out).float().mean() >= 0.99  # teacher forcing
    predicted = task.predict(held_out)
    assert predicted.shape == held_out.shape and predicted.dtype == torch.long
    assert (predicted == held_out).float().mean() >= 0.99  # greedy, from BOS alone
    assert task.losses[-1] < 0.05 < task.losses[0]


def test_maps_are_the_layers_own_attention_and_leave_outputs_unchanged(task, held_out):
    """Recompute the last cross-attention from the module's weights and the inputs it received."""
    src = held_out[:8]
    tgt = task.decoder_input(src)
    attention = task.model.transformer.decoder.layers[-1].multihead_attn
    inputs = []
    handle = attention.register_forward_pre_hook(lambda module, args: inputs.append(args))
    with torch.no_grad():
        plain = task.model(src, tgt)
    handle.remove()
    query, key = inputs[0][0], inputs[0][1]  # (batch, T, d_model), (batch, S, d_model)
    d, heads = query.shape[-1], attention.num_heads
    w_q, w_k = attention.in_proj_weight[:d], attention.in_proj_weight[d : 2 * d]
    b_q, b_k = attention.in_proj_bias[:d], attention.in_proj_bias[d : 2 * d]

    def split(x):  # (batch, L, d_model) -> (batch, heads, L, d_model // heads)
        return x.unflatten(-1, (heads, d // heads)).transpose(1, 2)

    q, k = split(query @ w_q.T + b_q), split(key @ w_k.T + b_k)
    expected = (q @ k.transpose(-2, -1) / math.sqrt(d // heads)).softmax(-1)
    torch.testing.assert_close(task.cross_attention(src), expected.detach(), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(task.model(src, tgt), plain)  # the hooks are gone
    assert not attention._forward_hooks and not attention._forward_pre_hooks


def test_snapshots_watch_the_cross_attention_become_diagonal(task):
    s = task.settings
    assert sorted(task.snapshots) == [0, 5, 10, 20, 40, 80, 160, 300]
    assert task.example.shape == (s.seq_len,)
    assert torch.equal(task.example, task.held_out(1)[0])
    assert all(snapshot.shape == (s.nhead, s.seq_len, s.seq_len) for snapshot in task.snapshots.values())
    assert diagonal_mass(task.snapshots[0]) < 0.5
    assert diagonal_mass(task.snapshots[s.steps]) >= 0.9
    torch.testing.assert_close(task.snapshots[s.steps], task.cross_attention(task.example[None])[0])


def test_same_seed_same_losses_and_weights_and_callers_state_untouched():
    torch.manual_seed(123)
    rng_before, threads_before = torch.random.get_rng_state(), torch.get_num_threads()
    first, second = (train_copy_task(seed=7, steps=30, snapshot_steps=[0, 30]) for _ in range(2))
    other = train_copy_task(seed=8, steps=30)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads_before and first.threads == 1
    assert len(first.losses) == 30 and first.losses == second.losses
    assert first.losses != other.losses
    for (name, weight), again in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(weight, again), name
    assert torch.equal(first.snapshots[30], second.snapshots[30])
    assert not torch.equal(first.model.embed.weight, other.model.embed.weight)


def test_settings_progress_and_sampling():
    calls = []
    task = train_copy_task(
        seed=1,
        steps=3,
        seq_len=5,
        vocab_size=7,
        d_model=8,
        nhead=4,
        layers=2,
        batch_size=2,
        snapshot_steps=(1, 3),
        progress=lambda *call: calls.append(call),
    )
    assert calls == list(enumerate(task.losses, start=1))
    assert task.settings.bos == 7 and task.settings.layers == 2
    assert len(task.model.transformer.decoder.layers) == 2
    assert task.snapshots[1].shape == (4, 5, 5) and sorted(task.snapshots) == [1, 3]
    batch = task.sample(50, torch.Generator().manual_seed(0))
    assert batch.shape == (50, 5) and batch.dtype == torch.long
    assert 0 <= batch.min() and batch.max() < 7 and len(batch.unique()) == 7
    assert torch.equal(batch, task.sample(50, torch.Generator().manual_seed(0)))
    assert torch.equal(task.decoder_input(batch[:1]), torch.cat([torch.tensor([[7]]), batch[:1, :-1]], 1))
    assert task.predict(batch[:3]).shape == (3, 5)
    task.model.train()  # methods evaluate in eval mode and then restore the mode they found
    task.cross_attention(batch[:2])
    assert task.model.training


@pytest.mark.parametrize(
    "maps, expected",
    [
        (torch.eye(4), 1.0),
        (np.full((3, 3), 1 / 3), 1 / 3),
        ([np.array([[0.5, 0.5], [0.2, 0.8]])], 0.65),  # a list holds layers: here one
        (np.stack([np.eye(2), np.full((2, 2), 0.5)]), 0.75),  # (heads, q, k): the mean of the heads
        # (batch, 1, q, k): the mean over the batch
        (torch.stack([torch.eye(2)[None], torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])]), 0.5),
        (torch.eye(3, dtype=torch.bfloat16, requires_grad=True), 1.0),
    ],
)
def test_diagonal_mass(maps, expected):
    assert diagonal_mass(maps) == pytest.approx(expected)


@pytest.mark.parametrize(
    "maps, error, message",
    [
        (torch.ones(4), ValueError, r"has shape \(4,\): a tuple or list holds layers"),
        (torch.ones(2, 1, 1, 2, 2), TypeError, r"holds 2 layers; pass one layer's map, maps\[i\]"),
        (torch.ones(2, 3, 4), ValueError, "3 queries and 4 keys"),
        (np.ones((0, 0)), ValueError, "empty dimension"),
        ("attention", TypeError, "must be an AttentionMaps or plain maps"),
    ],
)
def test_diagonal_mass_rejects_bad_maps(maps, error, message):
    with pytest.raises(error, match=message):
        diagonal_mass(maps)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"steps": -1}, ValueError, "steps must be at least 0, got -1"),
        ({"steps": 1.5}, TypeError, "steps must be an int, got float"),
        ({"seq_len": True}, TypeError, "seq_len must be an int, got bool"),
        ({"vocab_size": 1}, ValueError, "vocab_size must be at least 2"),
        ({"d_model": 30, "nhead": 4}, ValueError, r"d_model \(30\) must be divisible by nhead \(4\)"),
        ({"lr": 0}, ValueError, "lr must be a positive finite number"),
        ({"seed": "0"}, TypeError, "seed must be an int"),
        ({"snapshot_steps": [0, 301]}, ValueError, "from 0 .* to steps = 300, got 301"),
        ({"snapshot_steps": 5}, TypeError, "snapshot_steps must be an iterable of ints or None"),
        ({"threads": 0}, ValueError, "threads must be a positive int or None"),
        ({"progress": "tqdm"}, TypeError, r"progress must be a callable progress\(step, loss\)"),
    ],
)
def test_train_copy_task_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        train_copy_task(**kwargs)


@pytest.mark.parametrize(
    "tokens, error, message",
    [
        (torch.zeros(2, 10), TypeError, "integer torch tensor of token ids, got a torch.float32 tensor"),
        ([[1, 2, 3]], TypeError, "got list"),
        (torch.zeros(10, dtype=torch.long), ValueError, r"\(batch, length\).*got \(10,\); .* x\[None\]"),
        (torch.zeros(1, 11, dtype=torch.long), ValueError, "length <= seq_len = 10"),
        (torch.full((1, 3), 16), ValueError, r"\[0, 16\), got values from 16 to 16"),
    ],
)
def test_task_methods_reject_bad_tokens(task, tokens, error, message):
    for method in (task.predict, task.cross_attention, task.decoder_input):
        with pytest.raises(error, match=message):
            method(tokens)


def test_sample_rejects_bad_arguments(task):
    with pytest.raises(ValueError, match="batch must be a positive int, got 0"):
        task.sample(0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None"):
        task.sample(2, generator=0)


def test_importing_the_demos_package_imports_no_torch():
    code = (
        "import sys, visualizer.demos as d; assert 'torch' not in sys.modules; "
        "assert 'train_copy_task' in dir(d); d.train_copy_task; assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    import visualizer.demos

    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        visualizer.demos.nothing


def test_the_whole_copy_model_is_structured_by_its_declared_roles():
    """nn.Transformer's layers declare encoder and decoder roles: the flow plot and the demo read them."""
    pytest.importorskip("matplotlib")
    from visualizer import capture_attention
    from visualizer.plots import plot_attention_flow

    task = train_copy_task(seed=1, steps=0, layers=2)  # untrained: the structure is what is tested
    src = task.held_out(2)
    with capture_attention(task.model) as maps, torch.no_grad():
        task.model(src, task.decoder_input(src))
    assert [(i.role, i.kind, i.depth) for i in maps.infos] == [
        ("encoder", "self", 0),
        ("encoder", "self", 1),
        ("decoder", "self", 0),
        ("decoder", "cross", 0),
        ("decoder", "self", 1),
        ("decoder", "cross", 1),
    ]
    structured = maps.structured()
    assert [sorted(block) for block in structured["decoder"]] == [["cross_attention", "self_attention"]] * 2
    torch.testing.assert_close(task.cross_attention(src), structured["decoder"][-1]["cross_attention"])
    fig = plot_attention_flow(maps, layers=[-1])
    shown = [ax for ax in fig.axes if ax.get_visible() and not hasattr(ax, "_colorbar")]
    assert len(shown) == 3 and all(ax.get_title().endswith("layer 1") for ax in shown)
    np.testing.assert_allclose(shown[2].images[0].get_array(), maps[5][0].mean(0).numpy())
