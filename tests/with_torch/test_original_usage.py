"""The original tool's README usage, written out, runs unchanged: activate, decorate, run, read
``get_local.cache``; its maps feed the head and grid plots, and half precision stays half."""

import subprocess
import sys
import textwrap


def test_the_original_readme_usage_runs_unchanged(tmp_path):
    script = textwrap.dedent(
        """
        import numpy as np
        import torch
        from torch import nn

        from visualizer.visualizer import get_local  # the original's module path
        get_local.activate()  # Usage 1 and 2: activate, then define (or import) the model

        @get_local("attention_map")
        def your_attention_function(q, k):
            attention_map = (q @ k.transpose(-2, -1)).softmax(dim=-1)
            return attention_map.sum()

        class Attention(nn.Module):
            def __init__(self, dim=8, heads=2):
                super().__init__()
                self.heads, self.qkv = heads, nn.Linear(dim, 3 * dim)

            @get_local("attn_map")
            def forward(self, x):
                b, t, d = x.shape
                q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
                attn_map = (q @ k.transpose(-2, -1)).softmax(dim=-1)
                return (attn_map @ v).transpose(1, 2).reshape(b, t, d)

        model = nn.Sequential(Attention(), Attention()).eval()
        data = torch.randn(1, 1 + 4 * 4, 8)  # CLS + a 4 x 4 grid of patches
        with torch.no_grad():
            out = model(data)
            your_attention_function(torch.randn(3, 5), torch.randn(3, 5))
        cache = get_local.cache  # -> {'Attention.forward': [map, map], 'your_attention_function': [map]}
        assert sorted(cache) == ["Attention.forward", "your_attention_function"]
        assert [m.shape for m in cache["Attention.forward"]] == [(1, 2, 17, 17)] * 2
        assert cache["your_attention_function"][0].shape == (3, 3)

        import matplotlib
        matplotlib.use("Agg")
        from visualizer.plots import plot_grid_to_grid, plot_head, plot_heads
        attention_map = cache["Attention.forward"][-1]
        image = np.zeros((64, 64, 3), dtype=np.uint8)
        assert len(plot_head(attention_map[0], head=1).axes) == 2  # the original's "head": one map
        assert len(plot_heads(attention_map).axes) == 4  # its "heads": 2 heads, their mean, a colorbar
        grid = plot_grid_to_grid(image, attention_map, query=(1, 2))  # its "grids"
        row = attention_map[0].mean(0)[1 + 1 * 4 + 2, 1:].reshape(4, 4)
        np.testing.assert_allclose(grid.axes[1].images[1].get_array(), row)

        get_local.clear()  # the original's clear(): the keys stay, empty
        assert cache == {"Attention.forward": [], "your_attention_function": []}
        with torch.no_grad():
            model.half()(data.half())  # fp16 records stay fp16, as the original's .numpy() kept them
        assert {m.dtype for m in get_local.cache["Attention.forward"]} == {np.dtype("float16")}
        get_local.cache = {}  # the original's other way to start afresh
        assert get_local.cache == {"Attention.forward": [], "your_attention_function": []}
        print("ok")
        """
    )
    path = tmp_path / "original_usage.py"
    path.write_text(script)
    result = subprocess.run([sys.executable, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
