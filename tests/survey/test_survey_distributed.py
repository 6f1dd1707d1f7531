"""The same survey in one process and in two under torchrun (gloo, CPU): equal results."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from survey.survey_script import surveys
from survey.test_survey_merge import assert_same

from visualizer import SurveyResult

SCRIPT = Path(__file__).with_name("survey_script.py")
ROOT = Path(__file__).resolve().parents[2]


def run(command: list[str], out: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "CUDA_VISIBLE_DEVICES": "",  # gloo on the CPU
    }
    done = subprocess.run(
        command + [str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_under_torchrun_give_the_result_of_one(tmp_path):
    pytest.importorskip("torch.distributed")
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"], tmp_path)
    for (kind, alone), inputs in zip(surveys().items(), (5, 7)):  # one process: this one
        ranks = [SurveyResult.load(tmp_path / f"{kind}.{rank}.json") for rank in ("0", "1")]
        assert alone.inputs == inputs and alone.to_dict()["options"]["processes"] == 1
        assert ranks[0].to_dict()["options"]["processes"] == 2
        for result in ranks:  # every rank gets the whole result
            assert_same(result, alone)
