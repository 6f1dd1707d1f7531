"""A small runnable demo of get_local (``python -m visualizer``), until the CLI exists.

It captures attention maps two ways, on random weights (no download):
1. a hand-written self-attention whose ``forward`` assigns ``attn``;
2. timm's own ``Attention.forward``, in place, unmodified, first on timm's default
   fused path (get_local explains why nothing is recorded) and then unfused.
"""

from __future__ import annotations

import sys
import warnings

from visualizer import CaptureWarning, get_local

SENTENCE = "the cat sat on the mat".split()
SHADES = " .:-=+*#%@"


def main() -> int:
    try:
        import torch
    except ImportError:
        print(
            "The demo needs torch. Install the model extras:\n"
            '  pip install -c constraints.txt -e ".[models]"',
            file=sys.stderr,
        )
        return 1
    print("transformer-visualizer: get_local demo (random weights, CPU)\n")
    hand_written(torch)
    timm_in_place(torch)
    return 0


def hand_written(torch) -> None:
    from torch import nn

    class SelfAttention(nn.Module):
        def __init__(self, dim: int = 16, heads: int = 2) -> None:
            super().__init__()
            self.heads, self.qkv, self.out = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

        def forward(self, x):
            b, t, d = x.shape
            q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            attn = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(dim=-1)
            return self.out((attn @ v).transpose(1, 2).reshape(b, t, d))

    torch.manual_seed(0)
    model = nn.Sequential(SelfAttention(), SelfAttention()).eval()
    tokens = torch.randn(1, len(SENTENCE), 16)

    print("1. A hand-written attention, captured after the class exists:")
    print("   get_local('attn')(SelfAttention.forward); get_local.activate(); model(x)")
    get_local("attn")(SelfAttention.forward)
    with get_local.activated() as cache, torch.no_grad():
        model(tokens)
    maps = cache["hand_written.<locals>.SelfAttention.forward"]
    print(f"   cache['...SelfAttention.forward']: {len(maps)} maps (one per layer call), shape {maps[0].shape}")
    print(f"   every row sums to 1: {bool(abs(maps[0].sum(-1) - 1).max() < 1e-5)}")
    print("   layer 0, head 0 (rows: queries, columns: keys; darker = more attention):")
    print(text_heatmap(maps[0][0, 0], SENTENCE))
    get_local.undo(SelfAttention.forward)
    get_local.clear()


def timm_in_place(torch) -> None:
    try:
        import timm
        from timm.layers import Attention
    except ImportError:
        print("\n2. (skipped: timm is not installed)")
        return
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).eval()
    image = torch.randn(1, 3, 224, 224)
    print("\n2. timm's own Attention.forward, captured in place (no fork, no edit):")
    get_local("attn")(Attention.forward)
    try:
        with get_local.activated() as cache, torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CaptureWarning)
            vit(image)
        print(f"   default (fused attention): {len(cache['Attention.forward'])} maps recorded; get_local says:")
        for warning in caught[:1]:
            print("   " + str(warning.message).split(" (Warned once")[0])
        for block in vit.blocks:
            block.attn.fused_attn = False
        with get_local.activated() as cache, torch.no_grad():
            vit(image)
        maps = cache["Attention.forward"]
        print(f"   with fused_attn = False: {len(maps)} maps, each {maps[0].shape} (batch, heads, queries, keys)")
        cls_row = maps[-1][0].mean(0)[0, 1:]
        print(f"   last layer, CLS token's attention over the 14x14 patches: max {cls_row.max():.4f}, "
              f"mean {cls_row.mean():.4f}")
    finally:
        get_local.undo(Attention.forward)
        get_local.clear()


def text_heatmap(matrix, labels) -> str:
    width = max(map(len, labels))
    top = matrix.max()
    lines = ["   " + " " * (width + 1) + " ".join(label[:3].ljust(3) for label in labels)]
    for label, row in zip(labels, matrix):
        cells = " ".join(SHADES[min(len(SHADES) - 1, int(value / top * (len(SHADES) - 1)))] * 3 for value in row)
        lines.append(f"   {label.rjust(width)} {cells}")
    return "\n".join(lines)
