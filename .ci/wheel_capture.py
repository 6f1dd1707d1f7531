"""One real capture from the installed wheel (.ci/run runs it from an empty folder).

MiniLM's real weights (weights.txt), a sentence, every layer: the maps must come from the
installed package, have the model's shape, and be probabilities (rows sum to 1).
"""

import torch

import visualizer
from visualizer import capture_attention
from visualizer.models import load_bert

assert "site-packages" in visualizer.__file__, f"imported {visualizer.__file__}, not the wheel"
bert, tokenizer = load_bert()
inputs = tokenizer("The cat sat on the mat because it was tired.", return_tensors="pt")
with torch.no_grad(), capture_attention(bert) as maps:
    bert(**inputs)
tokens = inputs["input_ids"].shape[1]
assert len(maps) == 6, len(maps)
for layer in maps:
    assert tuple(layer.shape) == (1, 12, tokens, tokens), layer.shape
    torch.testing.assert_close(layer.sum(-1), torch.ones(1, 12, tokens))
print(f"wheel capture: {visualizer.__file__}: 6 layers of (1, 12, {tokens}, {tokens}), rows sum to 1")
