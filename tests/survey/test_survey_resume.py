"""An interrupted survey continues from its checkpoint and counts nothing twice."""

import json

import pytest
from survey.survey_models import TEXTS, CharTokenizer, images, tiny_bert, tiny_vit
from survey.test_survey_merge import assert_same

from visualizer import survey


class Interrupt(Exception):
    pass


def interrupt_after(k: int):
    def on_batch(done: int) -> None:
        if done == k:
            raise Interrupt(f"after {k} batches")

    return on_batch


def test_a_survey_interrupted_after_k_batches_resumes_to_the_uninterrupted_result(tmp_path):
    vit, inputs = tiny_vit(), images(7)
    checkpoint = tmp_path / "run.ckpt"
    with pytest.raises(Interrupt):
        survey(
            vit, inputs, batch_size=2, checkpoint=checkpoint, checkpoint_every=2, on_batch=interrupt_after(3)
        )
    state = json.loads(checkpoint.read_text())
    assert state["position"] == 2  # written after batch 2; batch 3 was counted but not saved
    assert state["tally"]["inputs"] == 4
    done = []
    resumed = survey(
        vit, inputs, batch_size=2, checkpoint=checkpoint, checkpoint_every=2, on_batch=done.append
    )
    assert done == [3, 4]  # only the batches after the checkpoint ran
    assert_same(resumed, survey(vit, inputs, batch_size=2))
    again = survey(vit, inputs, batch_size=2, checkpoint=checkpoint, on_batch=done.append)
    assert done == [3, 4] and again.inputs == 7  # finished: nothing left to run


def test_a_stream_resumes_too(tmp_path):
    bert, tokenizer = tiny_bert(), CharTokenizer()
    checkpoint = tmp_path / "texts.ckpt"

    def stream():
        yield from TEXTS

    with pytest.raises(Interrupt):
        survey(
            bert,
            stream(),
            tokenizer=tokenizer,
            batch_size=2,
            checkpoint=checkpoint,
            checkpoint_every=1,
            on_batch=interrupt_after(2),
        )
    resumed = survey(bert, stream(), tokenizer=tokenizer, batch_size=2, checkpoint=checkpoint)
    assert_same(resumed, survey(bert, TEXTS, tokenizer=tokenizer, batch_size=2))


def test_a_checkpoint_of_another_survey_is_refused(tmp_path):
    vit, inputs = tiny_vit(), images(2)
    checkpoint = tmp_path / "run.ckpt"
    survey(vit, inputs, batch_size=1, checkpoint=checkpoint)
    with pytest.raises(ValueError, match="is of another survey .*batch_size.*delete it"):
        survey(vit, inputs, batch_size=2, checkpoint=checkpoint)
    checkpoint.write_text("{not json")
    with pytest.raises(ValueError, match="cannot be read"):
        survey(vit, inputs, batch_size=1, checkpoint=checkpoint)
