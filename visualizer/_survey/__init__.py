"""Attention over a whole dataset: :func:`survey` streams inputs through a model and counts measures.

>>> from visualizer import survey
>>> result = survey(model, "photos/", batch_size=16)        # also under torchrun --nproc_per_node=N
>>> result.mean("distance").shape                            # (layers, heads)

One job per module: ``_accumulate`` (mergeable sums), ``_measures`` (per query row),
``_tally`` (every measure of a survey), ``_inputs`` (what is read, sharded), ``_decode``
(inputs to batches, in DataLoader workers), ``_distributed`` (torch.distributed),
``_checkpoint`` (resuming), ``_result`` (the result and its JSON), ``_figures`` (matplotlib),
``_run`` (:func:`survey` itself), ``_demo`` (the demo and the README's survey figures).
"""

from visualizer._survey._demo import natural_images, survey_figures, wordnet_glosses
from visualizer._survey._result import SurveyResult
from visualizer._survey._run import survey

__all__ = ["SurveyResult", "natural_images", "survey", "survey_figures", "wordnet_glosses"]
