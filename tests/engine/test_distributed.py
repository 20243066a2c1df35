"""DistributedDataParallel on CPU: 2 ranks over gloo on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    finished = False
    try:
        import playground.engine.training.trainer as train_module
        from playground.engine.config import ModelConfig, TrainConfig
        from playground.engine.data.corpus import build_corpus, builtin_text
        seen = []
        real = train_module.get_weighted_batch

        def recording(*args, **kwargs):
            x, y, w = real(*args, **kwargs)
            seen.append(x.clone())
            return x, y, w
        train_module.get_weighted_batch = recording
        corpus = build_corpus("fable", builtin_text("fable"), 0.1, 8)
        trainer = train_module.Trainer(
            ModelConfig(vocab_size=corpus.tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=8),
            TrainConfig(batch_size=4, max_steps=6, eval_interval=100, sample_chars=0, threads=1), corpus)
        done = list(trainer.run())[-1]
        flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        first = [torch.zeros_like(seen[0]) for _ in range(world)]
        dist.all_gather(first, seen[0])
        if rank == 0:
            Path(out).write_text(json.dumps({
                "identical": all(torch.equal(gathered[0], g) for g in gathered[1:]),
                "different_batches": not torch.equal(first[0], first[1]),
                "steps": done.step, "tokens": done.tokens}))
        dist.barrier()  # neither rank tears down the store while the other still uses it
        finished = True
    finally:
        dist.destroy_process_group()
    if finished:
        # leave without interpreter teardown: gloo's store threads can abort the process
        # there ("terminate called without an active exception") after a successful run
        os._exit(0)


def test_two_ranks_keep_identical_parameters_and_draw_different_batches(tmp_path):
    out = tmp_path / "result.json"
    # bounded: mp.spawn(join=True) waits forever if a rank hangs (a lost rendezvous, a store
    # torn down early), which once hung the whole suite; this fails in words instead
    ranks = mp.start_processes(_rank_main, args=(2, _free_port(), str(out)), nprocs=2, join=False,
                               start_method="spawn")
    deadline = time.monotonic() + 180
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail("the two ranks did not finish within 180 s")
    result = json.loads(out.read_text())
    assert result["identical"], "parameters diverged across ranks"
    assert result["different_batches"], "both ranks trained on the same batches"
    assert result["steps"] == 6 and result["tokens"] == 6 * 4 * 8 * 2


def test_torchrun_cli_writes_one_checkpoint_from_rank_0(tmp_path):
    ckpt, log = tmp_path / "ddp.safetensors", tmp_path / "ddp.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "playground", "train", "--builtin", "fable", "--layers", "1", "--heads", "2",
         "--width", "16", "--block", "8", "--batch", "4", "--steps", "5", "--threads", "1",
         "--out", str(ckpt), "--log-json", str(log)],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "x 2 ranks" in result.stderr
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4, 5]
    from playground.engine.model import checkpoint
    assert checkpoint.load(ckpt).state["step"] == 5
