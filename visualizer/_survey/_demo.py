"""The survey demo: DINOv2 over the natural photographs scikit-image and matplotlib ship, and MiniLM
over real English text that timm ships (WordNet's glosses of the ImageNet classes).

>>> paths = natural_images()            # 21 photographs: 20 from skimage.data, grace_hopper from matplotlib
>>> texts = wordnet_glosses(300)        # 300 definitions written by WordNet's lexicographers
>>> survey_figures("assets/")           # the README's survey figures (about a minute on 2 cores)

The photographs are every natural image in ``skimage.data``'s folder (the synthetic ones, the
binary horse, the icons and the chessboards left out) and matplotlib's ``grace_hopper.jpg``;
greyscale ones are made RGB. The texts are lines of ``timm/data/_info/imagenet_synset_to_definition.txt``,
taken evenly through the file, with at least six words each.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["SKIMAGE_PHOTOGRAPHS", "natural_images", "survey_figures", "wordnet_glosses"]

#: The photographs among the images of skimage.data (file names without the suffix).
SKIMAGE_PHOTOGRAPHS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock_motion",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "ihc",
    "microaneurysms",
    "moon",
    "motorcycle_left",
    "motorcycle_right",
    "page",
    "retina",
    "rocket",
    "text",
)


def natural_images() -> list[Path]:
    """Paths of the natural photographs that the installed scikit-image and matplotlib ship."""
    import skimage.data
    from matplotlib import cbook

    folder = Path(skimage.data.__file__).parent
    paths = []
    for name in SKIMAGE_PHOTOGRAPHS:
        found = sorted(folder.glob(f"{name}.*"))
        if found:
            paths.append(found[0])
    paths.append(Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return paths


def wordnet_glosses(count: int = 300, min_words: int = 6) -> list[str]:
    """``count`` WordNet definitions from timm's ImageNet synset file, spread evenly through it."""
    import timm.data

    path = Path(timm.data.__file__).parent / "_info" / "imagenet_synset_to_definition.txt"
    glosses = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.partition("\t")[2].strip()
        if len(text.split()) >= min_words:
            glosses.append(text[0].upper() + text[1:] + ("" if text.endswith(".") else "."))
    step = max(len(glosses) // count, 1)
    return glosses[::step][:count]


def survey_figures(out, dpi: int = 70, batch_size: int = 8) -> dict:
    """Survey DINOv2 (offline weights) over :func:`natural_images` and MiniLM over 300 glosses; write
    ``survey_distance.png``, ``survey_entropy.png``, ``survey_sink.png``, ``survey_cls.png`` (images)
    and ``survey_text_entropy.png``, ``survey_text_sink.png`` into ``out``. Returns {name: result}."""
    from visualizer._files import replacing
    from visualizer._survey._run import survey
    from visualizer.models import load_bert, load_vit

    out = Path(out)
    vit = load_vit()
    images = survey(vit, natural_images(), batch_size=batch_size)
    images.meta["model"] = "DINOv2 ViT-S/14"
    bert, tokenizer = load_bert()
    texts = survey(bert, wordnet_glosses(300), tokenizer=tokenizer, batch_size=batch_size * 4)
    texts.meta["model"] = "all-MiniLM-L6-v2"
    figures = {
        "survey_distance.png": images.plot_distance(),
        "survey_entropy.png": images.plot_entropy(),
        "survey_sink.png": images.plot_sink(),
        "survey_cls.png": images.plot_cls_maps(),
        "survey_text_entropy.png": texts.plot_entropy(),
        "survey_text_sink.png": texts.plot_sink(),
    }
    for name, figure in figures.items():
        with replacing(out / name) as temporary:
            figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
    return {"images": images, "texts": texts}
