"""Offline, interactive attention views: one self-contained HTML file, also inline in Jupyter.

>>> from visualizer.view import head_view, image_view
>>> view = head_view(outputs.attentions, tokens)          # text: tokens in two columns, lines by weight
>>> view.save("heads.html")                               # opens from disk; no network, no CDN
>>> image_view(cache["Attention.forward"], image)         # images: hover a patch, see its attention
<AttentionView image: 12 layers x 6 heads, 257 tokens (1 + 16x16 patches), 3.74 MB>
>>> model_view(maps, tokens)                              # every layer x head as a thumbnail; click one
>>> head_view(maps, src_tokens, decoder_tokens=tgt_tokens) # BART / T5: encoder self, decoder self, cross
>>> text_view(maps, tokens, prompt_length=12)             # long texts, generation: prose, shaded
>>> neuron_view(maps, tokens, layer=1, head=3)            # one pair's query, key and their product

``attentions`` is an ``AttentionMaps``, whose declared module paths label the layers, or
plain maps, which each view turns into one (:meth:`AttentionMaps.from_arrays
<visualizer.AttentionMaps.from_arrays>`: ``outputs.attentions`` or any tuple or list of
per-layer maps, (batch, heads, queries, keys) or (heads, queries, keys), numpy or torch;
one array of 4 axes is one layer, of 5 a stack of layers), labelled "layer i" (a layer declared
with windows or channels is refused: LayoutError; ``maps.scatter(name)`` puts a windowed
layer on the token grid). In a notebook a view shows itself
(``_repr_html_``: a sandboxed ``<iframe srcdoc>``, so no requireJS, CDN or extension);
``view.display(inline=True)`` puts the bare markup in the page instead.

File size. Each weight is stored as one byte: a square-root code relative to its row's
maximum, so small weights keep their detail (8-bit codes up to 2**21 weights, 6-bit above);
a ViT's CLS and register columns are stored exactly. The whole is deflated and
base64-encoded, and the browser inflates it with its built-in DecompressionStream; see
``visualizer/view/_codec.py`` for the error bound. Measured with real weights:

- DINOv2 ViT-S/14 at 224 px, 12 layers x 6 heads x 257 x 257 (4.76 M weights, 19 MB as
  float32): 3.7 MB (``chelsea``) and 3.4 MB (``grace_hopper``), the 224 px PNG (0.13 MB)
  and the script (16 kB) included. ``layers=[-1]``: 0.6 MB; ``layers=[2, 5, 8, 11]``:
  1.9 MB (8-bit codes); ``heads=[0]``: 1.0 MB.
- all-MiniLM-L6-v2 (BERT, 6 layers x 12 heads) on a 20-token sentence: 58 kB.

Every view has a theme button (auto: the system's ``prefers-color-scheme``; light; dark;
its colours are CSS variables on ``.tvz``: ``--tvz-bg``, ``--tvz-fg``, ``--tvz-muted``,
``--tvz-border``, ``--tvz-panel``, ``--tvz-accent``) and "Save PNG", which draws the view as
it is into one picture and downloads it (in a sandboxed notebook frame, where downloads are
blocked, the picture is shown to save with "Save image as").

The text view stores less: each row's strongest weights (``keep=16``) and the rest of the
row summed over bins of ``bin_width=128`` tokens (``visualizer/view/_topk_codec.py``), and
says in the view what was kept; it reads an ``AttentionMaps`` a block of rows at a time.
The neuron view stores one head's queries and keys, as float32, from ``maps.recipe(layer)``.

To shrink a view, keep fewer layers or heads (``layers=[8, 11]``, ``heads=[0, 3]``).
Browsers: Chrome/Edge 111+, Firefox 113+, Safari 16.4+ (DecompressionStream, color-mix).
"""

from visualizer.view._attention_view import AttentionView
from visualizer.view._head_view import head_view
from visualizer.view._image_view import image_view
from visualizer.view._model_view import model_view
from visualizer.view._neuron_view import neuron_view
from visualizer.view._text_view import text_view

__all__ = ["AttentionView", "head_view", "image_view", "model_view", "neuron_view", "text_view"]
