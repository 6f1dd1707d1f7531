"""Two surveys of tiny random plain-torch models (nothing but torch to import), one of images and one of
padded texts, run under torchrun: each rank writes its results (the test runs them in one process too).

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/survey/survey_script.py OUT_FOLDER
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from survey.survey_models import TEXTS, CharTokenizer, TorchText, TorchViT, images

from visualizer import survey


def surveys() -> dict:
    return {
        "images": survey(TorchViT(), images(5), batch_size=2, grid=(4, 4)),
        "texts": survey(TorchText(), TEXTS, tokenizer=CharTokenizer(), batch_size=2),
    }


if __name__ == "__main__":
    out, rank = Path(sys.argv[1]), os.environ["RANK"]
    for kind, result in surveys().items():
        result.save(out / f"{kind}.{rank}.json")
