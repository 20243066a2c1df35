"""Every fast path either refuses a config or matches the plain model on it.

Configs are drawn over every ModelConfig field, from the field's own declared values, so a
field added later is drawn too; a fast path that was not taught about it must refuse it.
Tolerances: gradients within 1e-4 of the largest (float32 sums in another order), decoded
probabilities within 1e-5, parameter counts and AdamW steps exact to float rounding.
"""

import dataclasses
import itertools
import weakref
from unittest import mock

import pytest
import torch
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from playground.engine.config import ModelConfig, SampleConfig, TrainConfig
from playground.engine.model import decoding
from playground.engine.model.decoding import (
    CACHED_STEP,
    FIRST_SLOTS,
    TRANSPOSED_WIDTH,
    TURN_TABLE,
    CachedRows,
    interleaved,
    plain_logits,
)
from playground.engine.model.fastpath import FAST_PATHS as TABLE
from playground.engine.model.fastpath import Verified
from playground.engine.model.flat_adamw import FLAT_ADAMW, FlatAdamW
from playground.engine.model.generation import Engine, Request
from playground.engine.model.gpt import GPT, rotate
from playground.engine.model.optimizers import build_optimizers
from playground.engine.model.param_count import FORMULA, count_params, formula
from playground.engine.training.step import choose_path

FAST_PATHS = list(TABLE)
CHECK = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# small sizes keep each example fast; every other field is drawn from its declaration
SIZES = {"vocab_size": st.integers(2, 20), "n_layer": st.integers(1, 3),
         "n_head": st.sampled_from([1, 2, 4]), "block_size": st.integers(1, 12)}


def declared(f: dataclasses.Field) -> st.SearchStrategy:
    """Values of a field from its declaration (config._setting): its choices, or its range."""
    meta = f.metadata
    assert meta.get("label"), f"ModelConfig.{f.name} has no declared values: use _setting()"
    if meta["choices"]:
        return st.sampled_from(meta["choices"])
    if isinstance(meta["low"], int):
        return st.integers(meta["low"], min(meta["high"], meta["low"] + 8))
    # the low end (dropout 0, say) is where fast paths usually apply: draw it half the time
    return st.one_of(st.just(meta["low"]), st.floats(meta["low"], meta["high"]))


@st.composite
def model_configs(draw, config_class=ModelConfig):
    values = {f.name: draw(SIZES[f.name] if f.name in SIZES else declared(f))
              for f in dataclasses.fields(config_class) if f.name != "n_embd"}
    # width = heads x head size (at least 4: a layer norm over 2 numbers outputs +-1, and its
    # gradients are pure float cancellation, which no two summation orders agree on)
    values["n_embd"] = max(values["n_head"] * draw(st.sampled_from([2, 4, 8])), 4)
    config = config_class(**values)
    assume(not config.problems())
    return config


def perturbed(config: ModelConfig, seed: int, scale: float = 0.3) -> GPT:
    torch.manual_seed(seed)
    model = GPT(config)
    with torch.no_grad():  # away from the initialisation, so every path carries signal
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model


def test_every_field_is_declared_and_drawn():
    """Every field has declared values (declared() asserts it) or a size strategy here, and
    the configs the fast paths are held to draw it away from its default, and every choice."""
    fields = dataclasses.fields(ModelConfig)
    assert set(SIZES) <= {f.name for f in fields}, "a size strategy for a field that is gone"
    drawn = []

    @settings(database=None, derandomize=True, max_examples=100, phases=[Phase.generate])
    @given(config=model_configs())
    def collect(config):
        drawn.append(config)
    collect()
    for f in fields:
        if f.name not in SIZES and f.name != "n_embd":
            declared(f)
        values = {getattr(c, f.name) for c in drawn}
        assert values - {f.default}, f"ModelConfig.{f.name} is never drawn off its default"
        assert set(f.metadata["choices"]) <= values, f"ModelConfig.{f.name}: a choice is never drawn"


# -- the training path: autograd, with the flat AdamW where it applies ----------------------
def _autograd(model, x, y, w):
    model.zero_grad(set_to_none=True)
    loss = model(x, y, weights=w)[1]
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


@CHECK
@given(config=model_configs(), rows=st.integers(1, 4), weighted=st.booleans(), seed=st.integers(0, 1000))
def test_the_fast_training_path_refuses_or_gets_the_plain_gradients(config, rows, weighted, seed):
    """Each step of the chosen path against autograd with torch's AdamW: the same loss and
    gradients, and the gradients are the flat buffer the flat AdamW steps on (autograd must
    accumulate into its views in place, or the optimizer would step on zeros). The optimizer
    itself is held to torch's below."""
    plain_model, fast_model = perturbed(config, seed), GPT(config)
    fast_model.load_state_dict(plain_model.state_dict())
    train = TrainConfig(learning_rate=1e-2, weight_decay=0.1)
    cpu = torch.device("cpu")
    fast = choose_path(fast_model, fast_model, train, cpu, plain_only=False)
    plain = choose_path(plain_model, plain_model, train, cpu, plain_only=True)
    assert plain.name == "autograd"
    if FLAT_ADAMW.refusal(config):
        assert fast.name == "autograd" and fast.note
        return
    assert fast.name == "autograd + flat AdamW"
    gen = torch.Generator().manual_seed(seed)
    for step in range(3):
        x = torch.randint(config.vocab_size, (rows, config.block_size), generator=gen)
        y = torch.randint(config.vocab_size, (rows, config.block_size), generator=gen)
        w = (torch.rand(rows, generator=gen) + 0.1) if weighted else None
        w = None if w is None else w / w.sum()
        losses = []
        for path in (fast, plain):
            torch.manual_seed(step)  # the same dropout masks for both
            losses.append(path.step(x, y, w).item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
        expected = {n: p.grad for n, p in plain_model.named_parameters()}
        floor = 1e-6 * max(g.abs().max().item() for g in expected.values())
        for name, p in fast_model.named_parameters():
            assert (p.grad - expected[name]).abs().max().item() <= 1e-4 * expected[name].abs().max().item() + floor
        buffers = [flat.grad for opt, _ in fast.optimizers for flat in opt.params]
        assert sum(b.abs().sum().item() for b in buffers) > 0  # the optimizer sees the gradients
        for opt, _ in fast.optimizers + plain.optimizers:
            opt.step()
        with torch.no_grad():  # the same weights again: Adam turns float noise into whole steps
            for p, q in zip(plain_model.parameters(), fast_model.parameters()):
                q.copy_(p)


# -- the flat AdamW -----------------------------------------------------------------------
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=model_configs(), decay=st.sampled_from([0.0, 0.1]), seed=st.integers(0, 100))
def test_flat_adamw_refuses_or_steps_like_torch_adamw(config, decay, seed):
    plain_model, flat_model = perturbed(config, seed), GPT(config)
    flat_model.load_state_dict(plain_model.state_dict())
    train = TrainConfig(learning_rate=1e-2, weight_decay=decay, beta1=0.8, beta2=0.95)
    (plain, _), = build_optimizers(plain_model, train)
    (inner, _), = build_optimizers(flat_model, train)
    if FLAT_ADAMW.refusal(config):
        with pytest.raises(ValueError, match="not verified"):
            FlatAdamW(inner, flat_model)
        return
    flat = FlatAdamW(inner, flat_model)
    for step, lr in enumerate([1e-2, 5e-3, 2e-2]):
        gen = torch.Generator().manual_seed(100 + step)
        for p, q in zip(plain_model.parameters(), flat_model.parameters()):
            g = torch.randn(p.shape, generator=gen)
            p.grad = g.clone()
            q.grad.copy_(g)  # in place: the flat buffer's views
        for opt in (plain, flat):
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
        for (name, p), q in zip(plain_model.named_parameters(), flat_model.parameters()):
            assert torch.allclose(p, q, rtol=1e-5, atol=1e-7), name


# -- the cached decoding step ---------------------------------------------------------------
@CHECK
@given(config=model_configs(), lengths=st.lists(st.integers(1, 20), min_size=1, max_size=4),
       seed=st.integers(0, 1000), first_slots=st.sampled_from([1, 3, FIRST_SLOTS]))
def test_the_engine_gives_each_row_the_plain_probabilities(config, lengths, seed, first_slots):
    """Several sequences through the engine at once, each at its own length, past the block
    (the cache is filled, dropped for a sliding window or rolled, as the position scheme needs),
    with one leaving midway: every row's distribution is the plain path's for that row alone.
    Where the cached step was not verified, the engine decodes through GPT.forward instead.
    The step's first slots are drawn too, so that they grow while rows come and go."""
    with mock.patch.object(decoding, "FIRST_SLOTS", first_slots):
        _each_row_gets_the_plain_probabilities(config, lengths, seed)


def _each_row_gets_the_plain_probabilities(config, lengths, seed):
    model = perturbed(config, seed).eval()
    if CACHED_STEP.refusal(config):
        with pytest.raises(ValueError, match="not verified"):
            CachedRows(model, 4)
    gen = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(config.vocab_size, (n,), generator=gen).tolist() for n in lengths]
    engine = Engine(model, CharTokenizerOf(config.vocab_size), capacity=4)
    assert engine.fast == (not CACHED_STEP.refusal(config))
    steps = 2 * config.block_size + 3
    requests = [Request(tuple(ids), SampleConfig(max_new_tokens=steps if i else config.block_size,
                                                 temperature=1.0, seed=i)) for i, ids in enumerate(prompts)]
    rows = [engine.add(r) for r in requests[:-1]]
    for step in itertools.count():
        if step == min(2, len(requests) - 1):  # one joins while the others are under way
            rows.append(engine.add(requests[-1]))
        if not engine.rows:
            break
        before = {id(row): list(row.ids) for row in engine.rows}
        for row, token in engine.step():
            expected = plain_logits(model, before[id(row)]).softmax(-1)
            assert (token.probs - expected).abs().max().item() <= 1e-5, (len(row.ids), rows.index(row))


@pytest.mark.parametrize("position", ["rope", "learned"])
def test_slots_are_made_as_positions_reach_them(position, monkeypatch):
    """A row's keys and values get FIRST_SLOTS slots at first, twice as many each time a
    position needs more, never more than the block: a short text costs a short text's memory.
    Rows joining with prompts longer than the slots made, rows leaving, the block filled (a
    rotary ring goes round; a learned row leaves the step): each row's distribution stays the
    plain path's."""
    monkeypatch.setattr(decoding, "FIRST_SLOTS", 4)
    config = ModelConfig(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=24, position=position)
    model = perturbed(config, 3).eval()
    engine = Engine(model, CharTokenizerOf(11), capacity=3)
    made = lambda: [s.size(3) for s in engine.batch.slots]  # noqa: E731
    assert made() == [4, 4]
    requests = [Request((1, 2), SampleConfig(max_new_tokens=40, temperature=1.0, seed=0)),
                Request(tuple(range(1, 10)), SampleConfig(max_new_tokens=6, temperature=1.0, seed=1)),
                Request((5,), SampleConfig(max_new_tokens=30, temperature=1.0, seed=2))]
    sizes = set()
    engine.add(requests[0])
    for step in range(60):
        if step in (3, 12):  # a prompt past the 8 slots made by then; later, one of a single token
            engine.add(requests[1 if step == 3 else 2])
        if not engine.rows:
            break
        before = {id(row): list(row.ids) for row in engine.rows}
        for row, token in engine.step():
            expected = plain_logits(model, before[id(row)]).softmax(-1)
            assert (token.probs - expected).abs().max().item() <= 1e-5, (step, before[id(row)])
        sizes.add(made()[0])
        held = max([len(r.ids) - 1 for r in engine.rows if r.mode == "step"], default=0)  # (not the new token)
        assert made()[0] >= min(held, config.block_size)
    # 4 hold the first row's first positions; at step 3 its fifth makes 8, then the 9-token
    # prompt 16 (twice 8); the block caps the next doubling at 24
    assert sizes == {4, 16, 24}
    assert not engine.rows and made() == [4, 4]  # every row has left: back to the first slots


def test_growing_slots_holds_one_layer_twice_at_most(monkeypatch):
    """Each layer's old slots are let go before the next layer's new ones are made (a server's
    rows of GPT-2 small going from 512 to 1,024 positions would otherwise hold 906 MB at once
    where 604 are needed)."""
    monkeypatch.setattr(decoding, "FIRST_SLOTS", 4)
    rows = CachedRows(perturbed(ModelConfig(vocab_size=11, n_layer=3, n_head=2, n_embd=8, block_size=24), 1), 2)
    old = [weakref.ref(s) for s in rows.slots]
    alive, zeros = [], torch.zeros

    def counting(*args, **kwargs):
        alive.append(sum(r() is not None for r in old))
        return zeros(*args, **kwargs)

    monkeypatch.setattr(torch, "zeros", counting)
    rows._make_room(8)
    assert alive == [3, 2, 1] and [s.size(3) for s in rows.slots] == [8, 8, 8]


@pytest.mark.parametrize("then", ["the row goes on", "a new request"])
@pytest.mark.parametrize("failing_layer", [0, 1])
def test_slots_that_could_not_grow_leave_the_engine_able_to_decode(failing_layer, then, monkeypatch):
    """Memory running out while slots grow (torch.zeros raising for one layer) fails that step
    and no other: the row can step again (its layers then differ in size until it does), or, as
    the server does, the rows are dropped and the next request, one the slots already hold,
    decodes as the plain path (a review found every later request failing)."""
    monkeypatch.setattr(decoding, "FIRST_SLOTS", 2)
    config = ModelConfig(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=16, position="rope")
    model = perturbed(config, 5).eval()
    engine = Engine(model, CharTokenizerOf(11), capacity=2)
    row = engine.add(Request((1,), SampleConfig(max_new_tokens=3 * config.block_size, temperature=1.0, seed=0)))
    engine.step()  # the prefill: 1 position
    engine.step()  # 2
    calls, zeros = [], torch.zeros

    def out_of_memory(*args, **kwargs):
        calls.append(args)
        if len(calls) == failing_layer + 1:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
        return zeros(*args, **kwargs)

    monkeypatch.setattr(torch, "zeros", out_of_memory)
    with pytest.raises(RuntimeError, match="allocate"):
        engine.step()  # position 2 needs a third slot
    monkeypatch.setattr(torch, "zeros", zeros)
    if then == "a new request":
        engine.remove(row)  # as the scheduler does when a step fails
        engine.add(Request((3,), SampleConfig(max_new_tokens=3 * config.block_size, temperature=1.0, seed=1)))
    while engine.rows:
        (only,) = engine.rows
        before = list(only.ids)
        for _, token in engine.step():
            assert (token.probs - plain_logits(model, before).softmax(-1)).abs().max().item() <= 1e-5, len(before)


def _linear_weights(model):
    b = model.h[0]
    return [b.attn.c_attn.weight, b.attn.c_proj.weight, b.mlp.c_fc.weight, b.mlp.c_proj.weight]


def _step_weights(rows):
    params = rows.layers[0][0]
    return [params[i] for i in (2, 4, 8, 10)] + [rows.head_w]


def _decodes_as_plain(model):
    """One row and then two get the plain probabilities, past the block."""
    engine = Engine(model, CharTokenizerOf(7), capacity=2)
    rows = [engine.add(Request((1, 2), SampleConfig(max_new_tokens=12, temperature=1.0, seed=0)))]
    for step in range(12):
        if step == 4:
            rows.append(engine.add(Request((3,), SampleConfig(max_new_tokens=6, temperature=1.0, seed=1))))
        before = {id(row): list(row.ids) for row in engine.rows}
        for row, token in engine.step():
            expected = plain_logits(model, before[id(row)]).softmax(-1)
            assert (token.probs - expected).abs().max().item() <= 1e-5, (step, rows.index(row))


@pytest.mark.parametrize("position", ["rope", "learned"])
@pytest.mark.parametrize("layout", ["narrow", "kept", "over budget", "in training"])
def test_the_cached_step_reads_copies_made_kept_or_the_models_own(position, layout, monkeypatch):
    """Up to TRANSPOSED_WIDTH the cached step makes transposed copies of the weights (cheaper
    calls a row at a time). Past it, for a frozen model within the budget, it keeps them with the
    model's weights (long rows read faster): a second CachedRows reads the same copies, and one
    made after the weights change reads new ones. Over the budget, or for a model in training,
    it reads the model's own (a rotary model's queries and keys reordered after c_attn). Each way
    decodes as the plain path."""
    from playground.engine.model import decoding
    if layout == "over budget":
        monkeypatch.setattr(decoding, "COPY_SHARE", 0.0)
    wide = layout != "narrow"
    width = TRANSPOSED_WIDTH + 8 if wide else 16
    config = ModelConfig(vocab_size=7, n_layer=1, n_head=4, n_embd=width, block_size=5, position=position)
    model = perturbed(config, 3, 0.05 if wide else 0.3).eval()  # (0.3 at this width: logits of hundreds)
    if layout != "in training":
        model.requires_grad_(False)
    first = CachedRows(model, 1)
    assert first.kept_copies == (layout == "kept")
    in_place = layout in ("over budget", "in training")
    own = [w.data_ptr() for w in _linear_weights(model)] + [model.lm_head.weight.data_ptr()]
    reads = [w.data_ptr() for w in _step_weights(first)]
    assert [a == b for a, b in zip(reads, own)] == [in_place] * 5
    again = [w.data_ptr() for w in _step_weights(CachedRows(model, 1))]
    assert (again == reads) == wide  # narrow: copies of its own each time; kept: the same ones
    _decodes_as_plain(model)
    with torch.no_grad():  # the weights change: a step made now reads the new ones
        model.h[0].mlp.c_fc.weight.add_(0.1)
    later = CachedRows(model, 1)
    assert (_step_weights(later)[2].data_ptr() == reads[2]) == in_place
    assert torch.equal(_step_weights(later)[2], model.h[0].mlp.c_fc.weight.detach().t())
    assert torch.equal(_step_weights(first)[2], _step_weights(later)[2]) == in_place
    _decodes_as_plain(model)


def test_the_copy_budget_is_a_share_of_memory_or_of_a_containers_limit(tmp_path):
    """COPY_SHARE of this machine's memory; a container's lower limit (cgroup v2's number, or
    v1's) lowers it, 'max' (no limit) and unreadable files do not."""
    from playground.engine.model import decoding
    whole = decoding.copy_budget(limits=())
    assert whole > 0
    v2, v1 = tmp_path / "memory.max", tmp_path / "limit_in_bytes"
    v2.write_text("max\n")
    v1.write_text("1048576\n")
    assert decoding.copy_budget(limits=(v2,)) == whole
    assert decoding.copy_budget(limits=(tmp_path / "absent", v2, v1)) == int(1048576 * decoding.COPY_SHARE)
    v1.write_text(str(10 ** 20))  # v1's "no limit" is a huge number
    assert decoding.copy_budget(limits=(v1,)) == whole


@pytest.mark.parametrize("change", ["fused AdamW", "flat AdamW", "fused AdamW, frozen again", "data",
                                    "data in place", "load_state_dict"])
def test_kept_copies_never_outlive_a_change_to_the_weights(change):
    """Kept copies are for frozen models only, checked against each weight's version counter,
    storage and numbers spread over it: torch's fused AdamW and the flat AdamW change weights in
    place without moving their version counters, so a model in training (parameters that
    require gradients) reads its own weights, and one frozen again after training gets new
    copies; `.data = ...`, `.data.add_` and load_state_dict on a frozen model are caught. After
    each change, a new step decodes as the plain path."""
    config = ModelConfig(vocab_size=7, n_layer=1, n_head=4, n_embd=TRANSPOSED_WIDTH + 8, block_size=5)
    model = perturbed(config, 5, 0.05).eval().requires_grad_(False)
    assert CachedRows(model, 1).kept_copies
    if "AdamW" in change:
        model.requires_grad_(True)
        opt = torch.optim.AdamW(model.parameters(), lr=0.05, fused=True)
        if change == "flat AdamW":
            opt = FlatAdamW(opt, model)
        for _ in range(2):
            logits, loss = model(torch.tensor([[1, 2, 3, 4]]), torch.tensor([[2, 3, 4, 5]]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert not CachedRows(model, 1).kept_copies
        if change.endswith("frozen again"):
            model.requires_grad_(False)
            assert CachedRows(model, 1).kept_copies
    elif change == "data":
        for w in _linear_weights(model):
            w.data = w.data + 0.05
    elif change == "data in place":  # the same storage, no version moved: the numbers differ
        for w in _linear_weights(model) + [model.lm_head.weight]:
            w.data.add_(0.05)
    else:
        state = {k: v + 0.05 if v.dim() == 2 else v for k, v in model.state_dict().items()}
        model.load_state_dict(state)
    _decodes_as_plain(model)


def test_a_model_made_in_inference_mode_reads_its_own_weights():
    """Inference tensors keep no version counter: such a model's copies are not kept, and it
    decodes as the plain path."""
    config = ModelConfig(vocab_size=7, n_layer=1, n_head=4, n_embd=TRANSPOSED_WIDTH + 8, block_size=5)
    with torch.inference_mode():
        model = perturbed(config, 6, 0.05).eval()
        assert not CachedRows(model, 1).kept_copies
        _decodes_as_plain(model)


def test_the_limit_files_are_this_process_cgroups_and_those_above_it(tmp_path):
    """cgroup v2's memory.max and v1's memory.limit_in_bytes, from /proc/self/cgroup's path up
    to the root; a limit on a cgroup above this one lowers the budget too."""
    from playground.engine.model import decoding
    lines = "12:cpu,cpuacct:/x\n4:memory:/box/one\n0::/slice/app\n"
    assert decoding.cgroup_limit_files(lines, tmp_path) == [
        tmp_path / "memory/box/one/memory.limit_in_bytes", tmp_path / "memory/box/memory.limit_in_bytes",
        tmp_path / "memory/memory.limit_in_bytes",
        tmp_path / "slice/app/memory.max", tmp_path / "slice/memory.max", tmp_path / "memory.max"]
    assert decoding.cgroup_limit_files("0::/\n", tmp_path) == [tmp_path / "memory.max"]
    (tmp_path / "slice").mkdir()
    (tmp_path / "slice/memory.max").write_text("2097152\n")  # a limit above this process's cgroup
    files = decoding.cgroup_limit_files("0::/slice/app\n", tmp_path)
    assert decoding.copy_budget(limits=files) == int(2097152 * decoding.COPY_SHARE)
    (tmp_path / "slice/memory.max").write_bytes(b"\xff\xfe")  # not text: no limit read, no error
    assert decoding.copy_budget(limits=files) == decoding.copy_budget(limits=[])


def test_a_large_head_is_read_in_place(monkeypatch):
    """A head over HEAD_COPY_LIMIT numbers (a large vocabulary) is not copied: the narrow model's
    blocks read their copies and its head the model's own weight, and the step still gives
    the plain probabilities (tied to the embedding and not)."""
    from playground.engine.model import decoding
    monkeypatch.setattr(decoding, "HEAD_COPY_LIMIT", 10)
    for tied in (False, True):
        model = perturbed(ModelConfig(vocab_size=7, n_layer=1, n_head=2, n_embd=8, block_size=4,
                                      position="rope", tie_embeddings=tied, head_bias=not tied), 1).eval()
        rows = CachedRows(model, 1)
        assert rows.head_w.data_ptr() == model.lm_head.weight.data_ptr()
        cache = decoding.new_cache(model)
        decoding.forward_logits(model, [1, 2], cache)
        rows.add(cache)
        for i, token in enumerate([3, 4, 5, 6, 0]):  # past the block
            expected = plain_logits(model, [1, 2, 3, 4, 5, 6, 0][:i + 3]).softmax(-1)
            assert (rows.step([token])[0].softmax(-1) - expected).abs().max().item() <= 1e-5


def test_the_cached_step_turns_interleaved_pairs_as_rotate_turns_halves():
    """The cached step keeps each head's rotated pairs (i, i + hs/2) side by side and turns them
    as complex numbers, one multiplication: gpt.rotate's numbers, reordered, to a rounding, from
    kept turns and from turns made past TURN_TABLE, for one row and several."""
    model = GPT(ModelConfig(vocab_size=5, n_layer=1, n_head=2, n_embd=16, block_size=4, position="rope"))
    rows, order = CachedRows(model, 3), interleaved(8)
    assert sorted(order.tolist()) == list(range(8)) and order[:4].tolist() == [0, 4, 1, 5]
    x = torch.randn(3, 2, 2, 8, generator=torch.Generator().manual_seed(0)) * 4  # (row, q|k, head, hs)
    for positions in ([0, 7, 300], [300], [5, 2], [TURN_TABLE + 3], [TURN_TABLE + 9, 2], [TURN_TABLE + 1, 8]):
        at = positions[0] if len(positions) == 1 else torch.tensor(positions)
        mine = x[:len(positions)][..., order].contiguous()
        turned = torch.view_as_real(torch.view_as_complex(mine.unflatten(-1, (4, 2))) * rows._turns(at, max(positions)))
        cos, sin = model.h[0].attn.rotary.tables(0, max(positions) + 1, "cpu")
        expected = rotate(x[:len(positions)], cos[positions], sin[positions])[..., order]
        assert (turned.flatten(-2) - expected).abs().max().item() <= 1e-5, positions
        assert not torch.equal(turned.flatten(-2), mine)  # (position 0 alone would not turn)


class CharTokenizerOf:
    """A tokenizer for random ids: characters enough for a vocabulary of n."""

    def __new__(cls, n):
        from playground.engine.data.tokenizer import CharTokenizer
        return CharTokenizer([chr(0x41 + i) for i in range(n)])


# -- the parameter-count formula ----------------------------------------------------------
@CHECK
@given(config=model_configs())
def test_parameter_formula_refuses_or_counts_exactly(config):
    built = GPT(config).num_params()
    assert count_params(config) == built
    if not FORMULA.refusal(config):
        assert formula(config) == built


# -- a field added later ------------------------------------------------------------------
def extended_config():
    """ModelConfig with one more setting nobody taught the fast paths about."""
    extra = dataclasses.field(default=True, metadata={
        "label": "query-key norm", "low": None, "high": None, "choices": (False, True)})
    return dataclasses.make_dataclass("ExtendedConfig", [("qk_norm", bool, extra)],
                                      bases=(ModelConfig,), frozen=True)


@pytest.mark.parametrize("fast_path", FAST_PATHS, ids=lambda v: v.name)
def test_a_new_model_setting_makes_every_fast_path_refuse(fast_path: Verified):
    config = extended_config()(vocab_size=5, n_layer=1, n_head=1, n_embd=4, block_size=4)
    assert fast_path.applies(ModelConfig(vocab_size=5, n_layer=1, n_head=1, n_embd=4, block_size=4))
    assert "qk_norm" in fast_path.refusal(config)


def test_a_new_model_setting_trains_and_decodes_on_the_plain_paths():
    config = extended_config()(vocab_size=5, n_layer=1, n_head=1, n_embd=4, block_size=4, position="rope")
    model = GPT(config)
    path = choose_path(model, model, TrainConfig(), torch.device("cpu"), plain_only=False)
    assert path.name == "autograd" and "qk_norm" in path.note
    assert not Engine(model.eval(), CharTokenizerOf(5)).fast
    assert count_params(config) == model.num_params()


# -- each holds exactly the model's parameters --------------------------------------------
def test_fast_paths_refuse_a_model_with_a_parameter_they_do_not_know():
    model = GPT(ModelConfig(vocab_size=5, n_layer=1, n_head=1, n_embd=4, block_size=4, position="rope"))
    model.extra = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="exactly the model's parameters"):
        CachedRows(model, 1)
    model = GPT(ModelConfig(vocab_size=5, n_layer=1, n_head=1, n_embd=4, block_size=4))
    partial = torch.optim.AdamW(list(model.parameters())[:-1])
    with pytest.raises(ValueError, match="exactly the model's parameters"):
        FlatAdamW(partial, model)
