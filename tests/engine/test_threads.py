"""The automatic thread count: the usable cores (affinity, OMP_NUM_THREADS, torchrun's ranks),
less the cores other programs keep busy now, looked at again at every evaluation."""

import os

import pytest
import torch

from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.training import threads
from playground.engine.training import trainer as trainer_module
from playground.engine.training.prepare import prepare_run


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)


@pytest.mark.parametrize("environ, cores", [
    ({}, 4),
    ({"OMP_NUM_THREADS": "1"}, 1),           # torchrun's setting for each rank
    ({"OMP_NUM_THREADS": "3"}, 3),
    ({"OMP_NUM_THREADS": "0"}, 4),           # not a thread count: ignored
    ({"OMP_NUM_THREADS": "two"}, 4),
    ({"LOCAL_WORLD_SIZE": "2"}, 2),          # two ranks on this machine share its cores
    ({"LOCAL_WORLD_SIZE": "8"}, 1),
    ({"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "3"}, 3),   # asked for: kept
])
def test_usable_cores(four_cores, environ, cores):
    assert threads.usable_cores(environ) == cores


def test_threads_leave_the_busy_cores_to_other_programs(four_cores):
    assert threads.threads_for(4, {}, busy=0) == 4
    assert threads.threads_for(4, {}, busy=1) == 3
    assert threads.threads_for(2, {}, busy=1) == 2
    assert threads.threads_for(2, {}, busy=3) == 1
    assert threads.threads_for(2, {}, busy=9) == 1


def test_other_programs_running_are_counted_from_proc_less_this_process(tmp_path):
    (tmp_path / "loadavg").write_text("0.50 0.40 0.30 4/211 31337\n")
    for tid, state in (("10", "R"), ("11", "S"), ("12", "R")):
        task = tmp_path / "self" / "task" / tid
        task.mkdir(parents=True)
        task.joinpath("stat").write_text(f"{tid} (python (x) y) {state} 1 2 3 4\n")  # a name with ')' in it
    assert threads.running_elsewhere(samples=2, gap_s=0, proc=tmp_path) == 2
    (tmp_path / "loadavg").write_text("0.50 0.40 0.30 1/211 31337\n")  # only us: never below 0
    assert threads.running_elsewhere(samples=1, proc=tmp_path) == 0
    assert threads.running_elsewhere(proc=tmp_path / "missing") == 0  # unknown: taken as 0


def test_this_machine_reads_a_count():
    assert threads.running_elsewhere(samples=1) >= 0


def test_the_count_is_chosen_again_at_each_evaluation(monkeypatch):
    answers = iter([2, 1, 2])
    monkeypatch.setattr(trainer_module, "threads_for", lambda wanted: next(answers))
    monkeypatch.setattr(trainer_module, "usable_cores", lambda: 2)
    model = ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=32)   # a step worth two threads (6.8e6)
    text = "".join(chr(97 + (i * 7919) % 26) for i in range(1200))
    run = prepare_run("letters", text, model, TrainConfig(batch_size=8, max_steps=4, eval_interval=2,
                                                          eval_batches=1, sample_chars=0, warmup_steps=0))
    assert run.threads == 2
    seen = []
    for _ev in run.run():
        seen.append(torch.get_num_threads())
    assert run.threads == 2 and 1 in seen   # busy at the first evaluation, free again at the second
    with pytest.raises(StopIteration):
        next(answers)
