"""The bench's own parts: nanoGPT's restated recipe, the time-to-goal reading, the curves PNG,
and the estimates the window shows."""

import math

import pytest

from playground.bench import nanogpt
from playground.engine.config import ModelConfig, TrainConfig
from playground.engine.presets import PRESETS
from playground.engine.training.estimate import estimate, rows_per_step


def test_time_to_goal_interpolates_between_scorings_and_says_never():
    evals = [{"seconds": 0.0, "val_full": 4.2}, {"seconds": 10.0, "val_full": 2.0},
             {"seconds": 20.0, "val_full": 1.8}, {"seconds": 30.0, "val_full": 1.7}]
    assert nanogpt.time_to(evals, 1.9) == pytest.approx(15.0)
    assert nanogpt.time_to(evals, 2.0) == pytest.approx(10.0)
    assert nanogpt.time_to(evals, 5.0) == 0.0
    assert nanogpt.time_to(evals, 1.5) is None
    # evaluations without a score are skipped, not read as zero
    assert nanogpt.time_to([{"seconds": 1.0, "val_full": None}, *evals], 1.9) == pytest.approx(15.0)


def test_the_restated_cpu_recipe_has_nanogpts_parameter_count():
    r = nanogpt.RECIPES["cpu"]
    C, V, T, L = r.n_embd, 65, r.block_size, r.n_layer
    # no biases, LayerNorm weights only, head tied to the token embedding
    expected = V * C + T * C + L * (2 * C + 3 * C * C + C * C + 8 * C * C) + C
    assert sum(p.numel() for p in nanogpt.NanoGPT(r, V).parameters()) == expected == 804_096


def test_the_restated_recipe_trains_and_scores_on_the_clock_it_reports():
    text = "to be or not to be that is the question. " * 60
    r = nanogpt.Recipe(1, 2, 16, 16, 4, 20, 0.0, 2, False, warmup_iters=2, eval_interval=10,
                       score_interval=5)
    out = nanogpt.train(r, text)
    steps = [e["step"] for e in out["evals"]]
    assert steps == [0, 5, 10, 15, 20]
    seconds = [e["seconds"] for e in out["evals"]]
    assert seconds == sorted(seconds) and seconds[-1] <= out["train_seconds"]
    assert out["evals"][-1]["val_full"] < out["evals"][0]["val_full"] < math.log(len(set(text))) + 0.5
    assert [e["val_estimate"] is not None for e in out["evals"]] == [True, False, True, False, True]


def test_the_curves_png_is_drawn(tmp_path):
    from PySide6.QtGui import QImage

    from playground.bench.curves import draw
    out = tmp_path / "curves.png"
    draw({"title": "t", "goals": [1.88], "runs": {"a": [[0, 4.0], [10, 2.0]], "b": [[5, 3.0], [8, 1.9]],
                                                   "empty": []}}, str(out), size=(640, 400))
    image = QImage(str(out))
    assert not image.isNull() and image.width() >= 600
    # the first run's colour is in the picture: its line was drawn
    colours = {image.pixelColor(x, y).name() for x in range(0, image.width(), 2)
               for y in range(0, image.height(), 2)}
    assert "#1f77b4" in colours


# -- the window's estimates ---------------------------------------------------------------
def test_the_estimate_counts_evaluations_the_optimizer_and_the_batch():
    model, train = PRESETS["shakespeare-cpu"].model, PRESETS["shakespeare-cpu"].train
    base = estimate(model, train, 10**6)
    assert base.run_s > base.step_s * train.max_steps  # evaluations cost time too
    assert estimate(model, train.replace(eval_interval=train.eval_interval // 2), 10**6).run_s > base.run_s
    assert estimate(model, train.replace(optimizer="muon"), 10**6).step_s > base.step_s
    assert estimate(model, train.replace(batch_size=2 * train.batch_size), 10**6).memory_bytes > \
        base.memory_bytes


def test_the_estimate_scales_with_the_measured_matmul_peak():
    """Uncalibrated, the fitted rate; calibrated, MATMUL_SHARE of the measured peak for a model
    FULL_WIDTH wide or wider, less for narrower ones (down to 64 wide): the matmul part of a
    step halves when the peak doubles, the fixed costs stay."""
    from playground.engine.training import estimate as est
    model, train = PRESETS["shakespeare-2min"].model, PRESETS["shakespeare-2min"].train
    try:
        est.forget_calibration()
        assert est.matmul_rate(128) == est.MATMUL_FLOPS
        fixed = est.STEP_OVERHEAD_S + model.n_layer * est.LAYER_OVERHEAD_S
        fixed += est.estimate(model, train, 10**6).step_s - est.estimate(model.replace(dropout=0.0), train, 10**6).step_s
        steps = []
        for peak in (200e9, 400e9):
            assert est.calibrate(peak) == peak
            assert est.matmul_rate(128) == est.matmul_rate(est.FULL_WIDTH) == pytest.approx(est.MATMUL_SHARE * peak)
            assert est.matmul_rate(64) == est.matmul_rate(32) == pytest.approx(est.matmul_rate(128) * 64 / est.FULL_WIDTH)
            steps.append(est.estimate(model, train, 10**6).step_s - fixed)
        assert steps[0] == pytest.approx(2 * steps[1])
        assert 1e9 < est.measure_matmul_peak(2) < 1e14  # a real measurement: FLOP/s
    finally:
        est.forget_calibration()


def test_a_repetitive_text_merges_windows_and_costs_less():
    assert rows_per_step(32, 7, 0.0) == pytest.approx(7 * (1 - (6 / 7) ** 32))  # ~6.95 of 7
    assert rows_per_step(32, 7, 0.1) == 32      # dropout: no merging
    assert rows_per_step(32, 10**6, 0.0) == 32  # nothing repeats
    model, train = ModelConfig(n_layer=2, n_embd=64, block_size=32), TrainConfig(batch_size=32)
    assert estimate(model, train, 7).step_s < estimate(model, train, 10**6).step_s


def test_the_lean_windowed_forward_the_generation_bench_measures_is_the_model():
    import torch

    from playground.bench.generation_speed import lean_window_logits
    from playground.engine.model.gpt import GPT
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=11, n_layer=3, n_head=2, n_embd=16, block_size=8)).eval()
    lean = lean_window_logits(model)
    ids = torch.randint(0, 11, (8,))
    for n in (1, 5, 8):  # a short text and a full window
        with torch.no_grad():
            plain, _ = model(ids[None, :n])
        assert torch.allclose(lean(ids[:n]), plain[0, -1], atol=1e-5)


def test_a_recipe_that_never_reaches_the_goal_is_read_as_a_lower_bound():
    evals = [{"seconds": 0.0, "val_full": 4.2}, {"seconds": 80.0, "val_full": 1.91}]
    assert nanogpt.time_or_bound(evals, 1.88, 84.0) == (84.0, False)
    assert nanogpt.time_or_bound(evals, 1.95, 84.0) == (pytest.approx(80 * (4.2 - 1.95) / (4.2 - 1.91)), True)


def test_the_estimate_reads_as_a_sentence():
    from playground.engine.training.estimate import Estimate
    assert Estimate(0.001, 0.0, 0.5, 92 * 2**20).describe(10) == \
        "about 92.0 MB of memory, ~1 ms per step, under 1 s for 10 steps"
    assert Estimate(0.157, 0.5, 98.3, 3e8).describe(600).endswith("~1.6 min for 600 steps")
    assert Estimate(0.157, 0.5, 5400, 3e8).describe(600).endswith("~1.5 h for 600 steps")


def test_the_decode_limit_counts_every_weight_a_token_reads(monkeypatch):
    from playground.bench import decode_bandwidth
    from playground.bench.decode_bandwidth import read_bandwidth, step_bytes
    from playground.engine.config import ModelConfig
    from playground.engine.model.gpt import GPT
    C, L, V = 16, 2, 50
    model = GPT(ModelConfig(vocab_size=V, n_layer=L, n_head=2, n_embd=C, block_size=8, tie_embeddings=True,
                            head_bias=False))
    # per block: qkv 3C x C, projection C x C, MLP 4C x C twice; the head V x C (the tied embedding)
    matrices = L * (3 * C * C + C * C + 2 * 4 * C * C) + V * C
    biases = L * (3 * C + C + 4 * C + C)       # every linear's bias (a tied head has none)
    norms = (2 * L + 1) * 2 * C                # two per block and the final one, weight and bias
    rows = 2 * C                               # one row of the token and position tables
    assert step_bytes(model, False) == 4 * (matrices + biases + norms + rows)
    assert step_bytes(model, True) == matrices + 4 * (biases + norms + rows)
    fastest, rates = read_bandwidth(1, gib=0.01, repeats=2)
    assert 1e8 < fastest < 1e13 and fastest == max(rates.values())
    assert set(rates) == {"sum", "matrix-vector"} and all(1e8 < r < 1e13 for r in rates.values())
    # the limit is the faster read: a slow sum must not lower it
    monkeypatch.setattr(decode_bandwidth, "read_rates", lambda *a, **k: {"sum": 2.45e10, "matrix-vector": 3.0e10})
    assert read_bandwidth(2)[0] == 3.0e10


def test_the_estimate_charges_dropout_per_masked_element():
    """Dropout masks the attention probabilities (layers x heads x T x T a window) and the
    residual stream (the embeddings and two per layer, T x C a window): each element costs."""
    from playground.engine.config import ModelConfig, TrainConfig
    from playground.engine.training.estimate import DROPOUT_S_PER_ELEMENT, estimate
    model, train = ModelConfig(vocab_size=65, n_layer=3, n_head=2, n_embd=32, block_size=16), TrainConfig(batch_size=4)
    plain = estimate(model, train, 10**6).step_s
    masked = estimate(model.replace(dropout=0.1), train, 10**6).step_s
    assert masked - plain == pytest.approx(DROPOUT_S_PER_ELEMENT * 4 * 16 * (3 * 2 * 16 + 7 * 32), rel=1e-9)
    residual_only = estimate(model.replace(dropout=0.1, attention_dropout=False), train, 10**6).step_s
    assert residual_only - plain == pytest.approx(DROPOUT_S_PER_ELEMENT * 4 * 16 * 7 * 32, rel=1e-9)
