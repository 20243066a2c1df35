"""Decoding, beside the model (as nanochat keeps engine.py beside gpt.py): the caches that hold
what a sequence has seen, and the one cached step that gives the next token's logits for a batch
of sequences, each at its own position. generation.py drives it for every consumer (the command
line, the window, evaluation, the server); a single sequence is a batch of one.

A prompt goes through GPT.forward once with a cache of its own (the prefill); its keys and values
then move into the batch's rows, and each later token is one row of the cached step.
Learned positions: a row holds every position's keys and values until the block is full; after
that the window slides, every position's absolute position changes, and the window is recomputed
through GPT.forward for each token (learned position tables cannot be rolled).
Rotary positions (window W at every layer): a ring of W slots per layer, slot = position % W,
holds exactly the positions the next token may attend to. Attention ignores key order (positions
are rotated into the keys), so the ring rolls on forever at constant cost.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary

from playground.engine.model import int8
from playground.engine.model.fastpath import CACHED_STEP, check_same_parameters
from playground.engine.model.gpt import GPT, attention_mask


# -- the prefill's caches (GPT.forward's cache protocol) ----------------------------------
class KVCache:
    """Every position's keys and values, one pair per layer (learned positions)."""

    def __init__(self, n_layer: int):
        self.keys: list[Optional[torch.Tensor]] = [None] * n_layer
        self.values: list[Optional[torch.Tensor]] = [None] * n_layer
        self.seen = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int):
        T = k.size(2)
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k.detach(), v.detach()
        if T == 1:  # one new query may see every cached key
            return k, v, None
        q_pos = torch.arange(start, start + T, device=k.device)
        return k, v, attention_mask(q_pos, torch.arange(k.size(2), device=k.device), None)


class RingCache:
    """A ring of `window` key and value slots per layer (rotary positions)."""

    def __init__(self, n_layer: int, window: int):
        self.rings: list[Optional[torch.Tensor]] = [None] * n_layer  # [keys, values] x (B, nh, W, hs)
        self.window = window
        self.seen = 0

    def ring(self, layer: int, like: torch.Tensor) -> torch.Tensor:
        if self.rings[layer] is None:
            B, nh, _, hs = like.shape
            self.rings[layer] = like.new_zeros(2, B, nh, self.window, hs)
        return self.rings[layer]

    def valid(self, position: int, device) -> Optional[torch.Tensor]:
        """Which slots hold a position the query at `position` may see (None: all of them)."""
        if position + 1 >= self.window:
            return None
        return (torch.arange(self.window, device=device) <= position)[None, :]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int):
        W, T = self.window, k.size(2)
        ring = self.ring(layer, k)
        if T == 1:
            ring[0][:, :, start % W] = k[:, :, 0].detach()  # a cache is never part of a gradient
            ring[1][:, :, start % W] = v[:, :, 0].detach()
            return ring[0], ring[1], self.valid(start, k.device)
        if start != 0:
            raise ValueError("a rotary cache takes a prompt only as its first input")
        # a prefill: plain windowed attention, then the last W positions go into the ring
        positions = torch.arange(T, device=k.device)
        keep = min(T, W)
        slots = positions[T - keep:] % W
        ring[0][:, :, slots] = k[:, :, T - keep:].detach()
        ring[1][:, :, slots] = v[:, :, T - keep:].detach()
        return k, v, attention_mask(positions, positions, W)


def new_cache(model: GPT):
    cfg = model.config
    return RingCache(cfg.n_layer, cfg.block_size) if cfg.position == "rope" else KVCache(cfg.n_layer)


def prefill_ids(model: GPT, ids: list[int]) -> list[int]:
    """What a prefill feeds: a rotary token's ring entries depend on at most n_layer windows
    before it; learned positions take the prompt as it is (at most the block)."""
    cfg = model.config
    return ids[-cfg.block_size * (cfg.n_layer + 1):] if cfg.position == "rope" else ids


@torch.no_grad()
def forward_logits(model: GPT, ids: list[int], cache=None) -> torch.Tensor:
    """GPT.forward on one sequence, logits (V,) of its last position, on the CPU."""
    device = next(model.parameters()).device
    logits, _ = model(torch.tensor([ids], device=device), cache=cache, last_only=True)
    return logits[0, -1].float().cpu()


def window(model: GPT, ids: list[int]) -> list[int]:
    """The plain path's input for the next token: learned positions see the last block of ids;
    rotary positions the whole history (each layer attends within its window)."""
    return ids if model.config.position == "rope" else ids[-model.config.block_size:]


def plain_logits(model: GPT, ids: list[int]) -> torch.Tensor:
    """The next token's logits by the plain path: no cache, the whole window through
    GPT.forward. What the cached step is held to, and the bench's baseline."""
    return forward_logits(model, window(model, ids))



def weights_refusal(model: GPT, weights: str) -> str:
    """Why the cached step cannot decode this model with `weights` ("float32" or "int8"); ''
    when it can, or when float32 is asked for (the engine then decodes by GPT.forward)."""
    if weights == "float32":
        return ""
    if weights != "int8":
        return f"weights are float32 or int8, not {weights!r}"
    refusal = CACHED_STEP.refusal(model.config, next(model.parameters()).device) or int8.refusal()
    return f"8-bit weights need the cached decoding step: {refusal}" if refusal else ""


# A row at a time, a linear's cost is its call, not its arithmetic: torch.addmm on a weight stored
# (in, out) costs 30-40% less at widths up to 512 than F.linear's transposed view (issue 26, goal
# 3a: 5.6 -> 3.4 us for 384 x 128). The cached step keeps such copies for models up to this width,
# made with each CachedRows.
TRANSPOSED_WIDTH = 512
HEAD_COPY_LIMIT = 2 ** 22  # numbers: a 50,257-token head at width 512 would add 100 MB (tied: its wte's)
# Wider models are read at the memory's bandwidth, and there too (in, out) reads faster: MKL's
# matrix-vector product streams an (out, in) weight's rows of 768 numbers at 27 GB/s and an
# (in, out) copy's long rows at 30 (issue 26, goal 3b: GPT-2 small's step 20.3 -> 18.8 ms on a
# 2-core Xeon). But those copies are a second copy of every weight (GPT-2 small: +494 MB) and take
# ~0.3 s to make, more than a short generation saves, so they are kept with the weight they copy
# (_COPIES) and made once, under three conditions:
# - the model is frozen (no parameter requires a gradient: `generate` and `serve` freeze the model
#   they load). A model in training is not: torch's fused AdamW and our flat AdamW change weights
#   in place without moving their version counters, so only reading every number would tell for
#   sure that a kept copy of it is stale;
# - the copy is of the weight as it is now: its version counter (load_state_dict, copy_ and every
#   other in-place change to a frozen weight move it), where its numbers live (`.data = ...`),
#   and numbers spread over it (a model frozen again after training; kept_in_out);
# - they fit in COPY_SHARE of this machine's memory.
# Otherwise the step reads the model's own weights through transposed views (a rotary model's
# queries and keys are then reordered after c_attn).
COPY_SHARE = 1 / 8
_COPIES = WeakIdKeyDictionary()  # weight -> ((version, data_ptr, rows' order), fingerprint, (in, out) copy)
FINGERPRINT = 257  # numbers of a weight compared before its kept copy is used (kept_in_out)


CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_limit_files(cgroups: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """The memory-limit files of this process's cgroup and each above it, from
    /proc/self/cgroup's lines (`cgroups`): cgroup v2's memory.max, v1's memory controller's
    memory.limit_in_bytes. A limit set on any of them holds for this process."""
    files = []
    for line in cgroups.splitlines():
        hierarchy, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hierarchy == "0" and not controllers:
            base, name = root, "memory.max"
        elif "memory" in controllers.split(","):
            base, name = root / "memory", "memory.limit_in_bytes"
        else:
            continue
        here = base / path.strip().lstrip("/")
        while True:
            files.append(here / name)
            if here == base or base not in here.parents:
                break
            here = here.parent
    return files


def copy_budget(limits: Optional[list] = None) -> int:
    """Bytes that kept (in, out) copies of a wide model's weights may take: COPY_SHARE of this
    machine's memory, or of a container's limit where it is lower (`limits`: the files to read,
    by default this process's cgroups'; 0 where the memory cannot be read)."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0
    if limits is None:
        try:
            limits = cgroup_limit_files(Path("/proc/self/cgroup").read_text())
        except (OSError, ValueError):
            limits = []
    for path in limits:
        try:
            text = Path(path).read_text().strip()
        except (OSError, ValueError):  # (no such file, or not text)
            continue
        if text.isascii() and text.isdigit():  # ("max": no limit)
            memory = min(memory, int(text))
    return int(memory * COPY_SHARE)


def frozen(model: GPT) -> bool:
    """Whether no parameter of the model requires a gradient (nor is an inference tensor, which
    keeps no version counter): the models whose (in, out) copies may be kept."""
    return not any(p.requires_grad or p.is_inference() for p in model.parameters())


def kept_in_out(weight: torch.Tensor, order: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A frozen `weight` (out, in), its rows taken in `order` when given, as a contiguous (in, out)
    copy: the one made before while the weight has not changed since, else a new one, kept in
    its place. Changed means its version counter moved, its numbers moved (`.data = ...`), or
    one of FINGERPRINT numbers spread over it differs from when the copy was made: a weight
    can change without the first two (torch's fused AdamW moves no version counter, and the
    allocator may hand a new tensor the old address), for one when a model is frozen again
    after training; an optimizer step changes nearly every number. (The version is read
    before copying: a change under way while it copies leaves a copy that the next call
    remakes.)"""
    key = (weight._version, weight.data_ptr(), None if order is None else tuple(order.tolist()))
    flat = weight.detach().reshape(-1)
    count = min(FINGERPRINT, flat.numel())
    at = torch.arange(count) * (flat.numel() - 1) // max(count - 1, 1)  # (whole numbers: exact past 2**24)
    kept = _COPIES.get(weight)
    if kept is not None and kept[0] == key and torch.equal(flat[at], kept[1]):
        return kept[2]
    fingerprint = flat[at].clone()
    with torch.no_grad():
        rows = weight.detach() if order is None else weight.detach()[order]
        copy = rows.t().contiguous()
    _COPIES[weight] = (key, fingerprint, copy)
    return copy


def _linear(x: torch.Tensor, weight_t: torch.Tensor, bias: Optional[torch.Tensor],
            out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """F.linear with the weight given as (in, out), into `out` when given (F.linear's own
    arithmetic: it calls addmm on the weight's transposed view)."""
    return torch.addmm(bias, x, weight_t, out=out) if bias is not None else torch.mm(x, weight_t, out=out)


def _linear_int8(x: torch.Tensor, packed, bias: None = None, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """_linear's place for 8-bit weights (the bias is inside `packed`; the kernel makes its own
    output, copied into `out` when given)."""
    y = int8.linear(x, packed)
    return y if out is None else out.copy_(y)


_gelu_ = torch.ops.aten.gelu_.default


def interleaved(head_size: int) -> torch.Tensor:
    """The channel order within a head that puts each rotated pair (i, i + hs/2) side by side:
    0, hs/2, 1, hs/2 + 1, ... A pair is then one complex number, and turning it by its
    position's angle is one complex multiplication. Queries and keys are both reordered, so
    their dot products, and attention, are unchanged."""
    half = torch.arange(head_size // 2)
    return torch.stack((half, half + head_size // 2), 1).flatten()


# Slots a row's keys and values get at first, per layer: more are made as positions need them
# (CachedRows._make_room), up to the block. A block of 1,024 at GPT-2 small's width is 75 MB of
# slots a row, which would be made and zeroed for every generation, and by a server for each row
# of its capacity, whether its texts were ten tokens long or a thousand.
FIRST_SLOTS = 64
TURN_TABLE = 4096  # positions whose turns (complex numbers) the cached step keeps (CachedRows._turns)


class _Rows:
    """A step's working rows for B sequences: views of B rows of buffers made once for the whole
    capacity and written in place at every step (a row at a time, allocating each output costs
    as much as some operations). The views the step reads: per row, queries (nh, 1, hs), keys
    and values (nh, hs), the queries' and keys' pairs as complex numbers (2, nh, hs/2), and the
    MLP's hidden row seen transposed (F.gelu on a contiguous row goes to oneDNN, whose call costs
    ~6 us on 512 numbers against ~1 us for ATen's own kernel; on a transposed view it takes
    ATen's)."""

    def __init__(self, full: dict[str, torch.Tensor], B: int, nh: int, hs: int):
        self.x, self.out, self.qkv, self.h = (full[k][:B] for k in ("x", "out", "qkv", "h"))
        self.raw = full["raw"][:B] if "raw" in full else None  # c_attn's output, reordered into qkv
        split = self.qkv.view(B, 3, nh, 1, hs)
        self.q, self.k, self.v = split[:, 0], split[:, 1, :, 0], split[:, 2, :, 0]
        self.kv = split[0, 1:, :, 0]  # row 0's keys and values (2, nh, hs)
        self.pairs = torch.view_as_complex(self.qkv.view(B, 3, nh, hs // 2, 2)[:, :2]) if hs % 2 == 0 else None
        self.h_seen = self.h.view(2, -1).t() if self.h.numel() % 2 == 0 else self.h


def block_params(b) -> list[torch.Tensor]:
    """A block's weights in the order the cached step unpacks them: ln_1, c_attn, c_proj, ln_2,
    c_fc, mlp c_proj, each weight then bias."""
    return [b.ln_1.weight, b.ln_1.bias, b.attn.c_attn.weight, b.attn.c_attn.bias,
            b.attn.c_proj.weight, b.attn.c_proj.bias, b.ln_2.weight, b.ln_2.bias,
            b.mlp.c_fc.weight, b.mlp.c_fc.bias, b.mlp.c_proj.weight, b.mlp.c_proj.bias]


class CachedRows:
    """One new token for each of several sequences per step, each at its own position:
    forward()'s arithmetic with bare functional calls on (B, C) rows of detached weights,
    written in place into buffers made once for the capacity (_Rows: at these sizes the cost is
    per operation, not per FLOP). Its linears read transposed copies of the weights, made when it
    is made up to TRANSPOSED_WIDTH (later changes to the model's weights do not reach those);
    past it, copies kept with a frozen model's weights while they fit the budget (COPY_SHARE),
    else views of the model's own, as its biases, layer norms and embeddings always are. Rows
    stay packed (0..B-1): a sequence that leaves hands its row to the last one. Tests hold each
    row to GPT.forward.

    Rotary: a ring of block_size slots per layer and row. Queries and keys are kept with each
    head's channels interleaved (`interleaved`: c_attn's rows reordered in the copy the step
    reads; read in place, its outputs, one index_select), so that turning them is one
    complex multiplication. Learned: block_size slots per layer and row, filled in order; a row
    whose next position would be the block's end cannot go on here (generation.py then
    recomputes its window). Either way slots are made as positions reach them: FIRST_SLOTS at
    first, doubled as needed up to block_size (_make_room).

    weights="int8": every linear (the head too) reads 8-bit weights (int8.py); not exact."""

    def __init__(self, model: GPT, capacity: int, weights: str = "float32"):
        refusal = weights_refusal(model, weights) or CACHED_STEP.refusal(model.config, next(model.parameters()).device)
        if refusal:
            raise ValueError(refusal)
        cfg = model.config
        self.config, self.capacity = cfg, capacity
        self.rotary_positions = cfg.position == "rope"
        self.W, self.nh, self.hs, self.C = cfg.block_size, cfg.n_head, cfg.head_size, cfg.n_embd
        self.hidden = model.h[0].mlp.c_fc.out_features
        d = lambda t: t.detach()  # noqa: E731  (no autograd bookkeeping per operation)
        held = [model.wte.weight, model.ln_f.weight, model.ln_f.bias]
        held += [] if cfg.tie_embeddings else [model.lm_head.weight]  # tied: it is wte.weight
        held += [model.wpe.weight] if model.wpe is not None else []
        self.order = interleaved(self.hs) if self.rotary_positions else None
        # c_attn's outputs in our order: queries' and keys' channels interleaved, values' as they were
        self.columns = None if self.order is None else torch.cat((
            torch.arange(2 * self.C).view(2 * self.nh, self.hs)[:, self.order].flatten(), torch.arange(2 * self.C, 3 * self.C)))
        head = model.lm_head
        held += [p for b in model.h for p in block_params(b)]
        check_same_parameters(CACHED_STEP.name, held + ([head.bias] if head.bias is not None else []), model)
        # (in, out) copies: made here up to TRANSPOSED_WIDTH; past it, kept ones for a frozen
        # model within the budget (COPY_SHARE says why)
        narrow = weights == "int8" or self.C <= TRANSPOSED_WIDTH
        kept = not narrow and frozen(model) and self.linear_bytes(model) <= copy_budget()
        copies = narrow or kept
        self.reorder_after = self.columns is not None and not copies  # (c_attn read in place)
        self.layers = []
        for b in model.h:
            originals = block_params(b)
            params = [d(p) for p in originals]
            if self.columns is not None and copies:  # reordered in the copy the step reads anyway
                params[3] = params[3][self.columns]
                if narrow:
                    params[2] = params[2][self.columns]
            if kept:
                for i in (2, 4, 8, 10):
                    params[i] = kept_in_out(originals[i], self.columns if i == 2 else None)
            self.layers.append((params, b.ln_1.eps, b.ln_2.eps))
        self.wte, self.wpe = d(model.wte.weight), d(model.wpe.weight) if model.wpe is not None else None
        self.lnf_w, self.lnf_b, self.lnf_eps = d(model.ln_f.weight), d(model.ln_f.bias), model.ln_f.eps
        self.head_w, self.head_b = d(head.weight), d(head.bias) if head.bias is not None else None
        self.weights = weights
        if weights == "int8":  # each (weight, bias) pair of a linear becomes (packed, None)
            self.linear = _linear_int8
            for params, _, _ in self.layers:
                for i in (2, 4, 8, 10):
                    params[i], params[i + 1] = int8.pack(params[i], params[i + 1]), None
            self.head_w, self.head_b = int8.pack(self.head_w, self.head_b), None
        else:  # (in, out): copies up to TRANSPOSED_WIDTH, kept ones within the budget past it (both
            # say why), else views of the model's own
            self.linear = _linear
            if kept:  # (the blocks' are kept above)
                self.head_w = kept_in_out(head.weight)
            else:
                for params, _, _ in self.layers:
                    for i in (2, 4, 8, 10):
                        params[i] = params[i].t().contiguous() if narrow else params[i].t()
                # (a narrow model's large vocabulary: its head read in place)
                copy_head = narrow and self.head_w.numel() <= HEAD_COPY_LIMIT
                self.head_w = self.head_w.t().contiguous() if copy_head else self.head_w.t()
        self.kept_copies = kept
        self.rotary = model.h[0].attn.rotary  # the same tables for every layer
        self._kept: Optional[torch.Tensor] = None  # _turns' first TURN_TABLE positions
        self.gelu = "tanh" if cfg.activation == "gelu_tanh" else "none"
        # per layer: [keys, values] x (capacity, nh, slots so far, hs), grown towards W (_make_room)
        self.slots = [torch.empty(2, capacity, self.nh, 0, self.hs) for _ in range(cfg.n_layer)]
        self.positions: list[int] = []  # the next token's position, per row
        self._slot_numbers, self._row_numbers = torch.arange(self.W), torch.arange(capacity)
        like = self.wte
        self._full = {"x": like.new_empty(capacity, self.C), "out": like.new_empty(capacity, self.C),
                      "qkv": like.new_empty(capacity, 3 * self.C), "h": like.new_empty(capacity, self.hidden)}
        if self.reorder_after:
            self._full["raw"] = like.new_empty(capacity, 3 * self.C)
        self._rows: dict[int, _Rows] = {}  # views of _full, per number of rows
        self._resize(min(self.W, FIRST_SLOTS))

    def _make_room(self, n: int) -> None:
        """At least n slots per layer and row (n <= W): twice as many as the smallest layer has,
        or n, whichever is more, at most W (_resize). Slots fill in order until the window is
        full (rotary ones too: slot = position % W), so the first ones are all a row has used."""
        have = min(s.size(3) for s in self.slots)
        if n > have:
            self._resize(min(self.W, max(n, 2 * have)))

    def _resize(self, size: int) -> None:
        """Every layer's slots as `size` per row, in new zeroed buffers that keep the first slots
        of the old (growing: every one; back to the first slots once no row is left, the ones
        no row will read). A layer at a time, the views of the old buffers dropped first: at
        most one layer is held twice. A layer whose buffer could not be made (memory) keeps its
        old one: layers may then differ in size, which the step allows, and the next call
        makes the rest."""
        self._views: dict[int, list] = {}
        self._row0: list[torch.Tensor] = []
        self._slot_views: dict[tuple[int, int], torch.Tensor] = {}  # (layer, slot): row 0's keys and values
        try:
            for layer, old in enumerate(self.slots):
                if old.size(3) != size:
                    made = torch.zeros(2, self.capacity, self.nh, size, self.hs)
                    kept = min(old.size(3), size)
                    made[:, :, :, :kept] = old[:, :, :, :kept]
                    self.slots[layer] = made
        finally:
            self._row0 = [slots[:, 0] for slots in self.slots]  # per layer, row 0's keys and values (2, nh, size, hs)

    @staticmethod
    def linear_bytes(model: GPT) -> int:
        """Bytes of every weight the step reads through a linear: the blocks' four, the head's."""
        linears = [m.weight for b in model.h for m in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj)]
        return sum(w.numel() * w.element_size() for w in linears + [model.lm_head.weight])

    @property
    def rows(self) -> int:
        return len(self.positions)

    def fits(self, position: int) -> bool:
        """Whether a row whose next token is at `position` can step here."""
        return self.rotary_positions or position < self.W

    def add(self, cache) -> int:
        """Take a sequence prefilled into a batch-of-one cache (KVCache or RingCache); returns
        its row."""
        if self.rows == self.capacity:
            raise ValueError(f"the batch holds {self.capacity} sequences at most")
        row = self.rows
        self._make_room(min(cache.seen, self.W))
        for layer, slots in enumerate(self.slots):
            if self.rotary_positions:
                n = slots.size(3)  # (the ring's slots past its positions hold zeros)
                slots[0, row] = cache.rings[layer][0, 0, :, :n][..., self.order]  # keys, interleaved as ours
                slots[1, row] = cache.rings[layer][1, 0, :, :n]
            else:
                n = cache.keys[layer].size(2)
                slots[0, row, :, :n] = cache.keys[layer][0]
                slots[1, row, :, :n] = cache.values[layer][0]
        self.positions.append(cache.seen)
        return row

    def remove(self, row: int) -> Optional[int]:
        """Free a row; the last row moves into it. Returns the moved row's old index (None
        when the freed row was the last)."""
        last = self.rows - 1
        if row != last:
            for slots in self.slots:
                slots[:, row] = slots[:, last]
            self.positions[row] = self.positions[last]
        self.positions.pop()
        if not self.positions:  # idle: back to the first slots
            self._resize(min(self.W, FIRST_SLOTS))
        return last if row != last else None

    def _packed(self, B: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, views of the keys and values of rows 0..B-1 (kept: a step makes no new ones)."""
        if B not in self._views:
            self._views[B] = [(slots[0, :B], slots[1, :B]) for slots in self.slots]
        return self._views[B]

    def _working(self, B: int) -> _Rows:
        if B not in self._rows:
            self._rows[B] = _Rows(self._full, B, self.nh, self.hs)
        return self._rows[B]

    def _turns(self, at, last: int) -> torch.Tensor:
        """Each position's turn as complex numbers cos + i sin, (hs/2,) for one int `at`, else
        (B, 1, 1, hs/2) for a tensor of B positions, the last of them `last`: kept for the first
        TURN_TABLE positions (0.5 MB at head size 32), made for the rows alone past them."""
        if last < TURN_TABLE:
            if self._kept is None:
                cos, sin = self.rotary.tables(0, TURN_TABLE, self.wte.device)
                self._kept = torch.complex(cos.flatten(1), sin.flatten(1))
            turns = self._kept[at]
        else:
            cos, sin = self.rotary.tables(0, last + 1, self.wte.device)
            turns = torch.complex(cos.flatten(1)[at], sin.flatten(1)[at])
        return turns if isinstance(at, int) else turns.view(-1, 1, 1, turns.size(-1))

    def _slot(self, layer: int, slot: int) -> torch.Tensor:
        """Row 0's keys and values (2, nh, hs) at a slot of a layer: views kept (a step makes none
        once the window has gone round), made by one `select` (right after a large linear little
        is left in the cache, and each indexing step costs: 14 us against 20 for three)."""
        view = self._slot_views.get((layer, slot))
        if view is None:
            view = self._slot_views[layer, slot] = self._row0[layer].select(2, slot)
        return view

    @torch.no_grad()
    def step(self, tokens: list[int]) -> torch.Tensor:
        """Logits (B, V) for one new token per row (tokens[i] goes to row i)."""
        B, W, C = self.rows, self.W, self.C
        if len(tokens) != B:
            raise ValueError(f"the cached step takes a token for each of its {B} rows, not {len(tokens)}")
        positions, linear, r = self.positions, self.linear, self._working(B)
        x = r.x
        if B == 1:  # plain integers index a single row: far fewer operations than index tensors
            p = positions[0]
            x.copy_(self.wte[tokens[0]])
            if self.rotary_positions:
                turn = self._turns(p, p)
            else:
                x.add_(self.wpe[p])
            slot, rows = p % W, 0
            # slots fill in order until the window is full: attend to the filled ones only
            # (a block of 1,024 with 50 positions seen reads 50 slots, not 1,024)
            n, valid = min(p + 1, W), None
        else:
            pos = torch.tensor(positions)
            torch.index_select(self.wte, 0, torch.tensor(tokens), out=x)
            if self.rotary_positions:
                turn = self._turns(pos, max(positions))
            else:
                x.add_(self.wpe[pos])
            slot, rows = pos % W, self._row_numbers[:B]
            # the slots any row has filled (they fill in order until the window is full), and
            # which of them each row may see: all once its window is full, else 0..position
            n = min(max(positions) + 1, W)
            valid = None if min(positions) + 1 >= n else \
                (self._slot_numbers[None, :n] <= pos[:, None]).view(B, 1, 1, n)
        self._make_room(n)
        # (torch.layer_norm: F.layer_norm's own call, without its Python wrapper's checks)
        for layer, ((keys, values), ((w1, b1, wa, ba, wp, bp, w2, b2, wf, bf, wm, bm), e1, e2)) in \
                enumerate(zip(self._packed(B), self.layers)):
            if self.reorder_after:
                torch.index_select(linear(torch.layer_norm(x, (C,), w1, b1, e1), wa, ba, r.raw), 1, self.columns, out=r.qkv)
            else:
                linear(torch.layer_norm(x, (C,), w1, b1, e1), wa, ba, r.qkv)
            if self.rotary_positions:
                r.pairs.mul_(turn)  # queries and keys turned in place, values as they were
            if B == 1:
                self._slot(layer, slot).copy_(r.kv)
            else:
                keys[rows, :, slot] = r.k
                values[rows, :, slot] = r.v
            if keys.size(2) > n:  # (per layer: a layer's slots may outnumber another's)
                keys, values = keys[:, :, :n], values[:, :, :n]
            y = F.scaled_dot_product_attention(r.q, keys, values, attn_mask=valid)
            x.add_(linear(y.reshape(B, C), wp, bp, r.out))
            linear(torch.layer_norm(x, (C,), w2, b2, e2), wf, bf, r.h)
            _gelu_(r.h_seen, approximate=self.gelu)
            x.add_(linear(r.h, wm, bm, r.out))
        self.positions = [p + 1 for p in positions]
        return linear(torch.layer_norm(x, (C,), self.lnf_w, self.lnf_b, self.lnf_eps), self.head_w, self.head_b)
