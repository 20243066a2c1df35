"""Decoding, beside the model (as nanochat keeps engine.py beside gpt.py): the two caches, the
lean single-token step, and the Decoder that the sampler, the window and the server all use.

Learned positions: keys and values grow until the block is full; after that the window slides,
every position's absolute position changes, and the window is recomputed for each token.
Rotary positions (window W at every layer): a ring of W slots per layer, slot = position % W,
holds exactly the positions the next token may attend to. Attention ignores key order (positions
are rotated into the keys), so the ring rolls on forever at constant cost.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from playground.engine.fastpath import ANY, Verified, check_same_parameters
from playground.engine.model import GPT, attention_mask, rotate


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


# The lean step runs the rotary ring at batch 1 on the CPU; dropout is off when decoding.
LEAN = Verified("the lean decoder", {
    "vocab_size": ANY, "n_layer": ANY, "n_head": ANY, "n_embd": ANY, "block_size": ANY,
    "dropout": ANY, "position": {"rope"}, "head_bias": {True, False}}, devices=("cpu",))


def block_params(b) -> list[torch.Tensor]:
    """A block's weights in the order the lean steps unpack them: ln_1, c_attn, c_proj, ln_2,
    c_fc, mlp c_proj, each weight then bias."""
    return [b.ln_1.weight, b.ln_1.bias, b.attn.c_attn.weight, b.attn.c_attn.bias,
            b.attn.c_proj.weight, b.attn.c_proj.bias, b.ln_2.weight, b.ln_2.bias,
            b.mlp.c_fc.weight, b.mlp.c_fc.bias, b.mlp.c_proj.weight, b.mlp.c_proj.bias]


class LeanDecoder:
    """Logits (V,) for one new token with a RingCache: forward()'s arithmetic with bare
    functional calls on (1, C) rows of detached weights, because at batch 1 the cost is per
    operation (and per autograd check), not per FLOP. Tests hold it to forward()."""

    def __init__(self, model: GPT):
        refusal = LEAN.refusal(model.config, next(model.parameters()).device)
        if refusal:
            raise ValueError(refusal)
        self.model = model
        d = lambda t: t.detach()  # noqa: E731  (no autograd bookkeeping per operation)
        self.layers = []
        head = model.lm_head
        held = [model.wte.weight, model.ln_f.weight, model.ln_f.bias, head.weight]
        for b in model.h:
            params = block_params(b)
            held += params
            self.layers.append(([d(p) for p in params], b.ln_1.eps, b.ln_2.eps))
        check_same_parameters(LEAN.name, held + ([head.bias] if head.bias is not None else []), model)
        self.wte, self.lnf_w, self.lnf_b, self.head_w = (d(p) for p in held[:4])
        self.head_b = d(head.bias) if head.bias is not None else None
        self.lnf_eps = model.ln_f.eps
        self.rotary = model.h[0].attn.rotary  # the same tables for every layer

    def step(self, token: int, cache: RingCache) -> torch.Tensor:
        cfg = self.model.config
        C, nh, pos = cfg.n_embd, cfg.n_head, cache.seen
        hs, slot = C // nh, pos % cache.window
        x = self.wte[token].view(1, C)
        valid = cache.valid(pos, x.device)
        cos, sin = self.rotary.tables(pos, 1, x.device)
        cos, sin = cos[0], sin[0]
        for i, ((w1, b1, wa, ba, wp, bp, w2, b2, wf, bf, wm, bm), e1, e2) in enumerate(self.layers):
            qkv = F.linear(F.layer_norm(x, (C,), w1, b1, e1), wa, ba).view(3, nh, hs)
            qk = rotate(qkv[:2], cos, sin)  # (2, nh, hs)
            ring = cache.rings[i] if cache.rings[i] is not None else cache.ring(i, qk[1].view(1, nh, 1, hs))
            ring[0, 0, :, slot] = qk[1]
            ring[1, 0, :, slot] = qkv[2]
            y = F.scaled_dot_product_attention(qk[0].view(1, nh, 1, hs), ring[0], ring[1], attn_mask=valid)
            x = x + F.linear(y.view(1, C), wp, bp)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (C,), w2, b2, e2), wf, bf)), wm, bm)
        cache.seen += 1
        return F.linear(F.layer_norm(x, (C,), self.lnf_w, self.lnf_b, self.lnf_eps), self.head_w, self.head_b)[0]


class Decoder:
    """Logits for the next token of a sequence that grows one token at a time. The way to get
    them (a cache, the lean step, or the plain forward) is chosen once, here.

    use_cache=False is the plain path the tests and the bench compare with: learned positions
    recompute the last block, rotary positions the whole history (windowed at each layer).
    """

    def __init__(self, model: GPT, use_cache: bool = True):
        self.model = model
        self.block = model.config.block_size
        self.rolling = model.config.position == "rope"  # its cache never has to be dropped
        self.device = next(model.parameters()).device
        self.use_cache = use_cache
        self.cache = None
        self.lean = LeanDecoder(model) if use_cache and LEAN.applies(model.config, self.device) else None

    def next_logits(self, ids: list[int]) -> torch.Tensor:
        """Logits (V,) on the CPU after ids, the whole sequence so far; each call's ids are
        the previous call's plus one token."""
        if self.use_cache and (self.rolling or len(ids) <= self.block):
            if self.cache is None:  # prefill the prompt once
                self.cache = new_cache(self.model)
                # a token's ring entries depend on at most n_layer windows before it
                feed = ids[-self.block * (self.model.config.n_layer + 1):] if self.rolling else ids
                return self._forward(feed, self.cache)
            if self.lean is not None:
                with torch.no_grad():
                    return self.lean.step(ids[-1], self.cache)
            return self._forward(ids[-1:], self.cache)
        return self._forward(ids if self.rolling else ids[-self.block:])

    def _forward(self, ids: list[int], cache=None) -> torch.Tensor:
        with torch.no_grad():
            logits, _ = self.model(torch.tensor([ids], device=self.device), cache=cache, last_only=True)
        return logits[0, -1].float().cpu()


# The batched step: several sequences at once, each at its own position, for the server.
BATCH = Verified("the batched ring decoder", {
    "vocab_size": ANY, "n_layer": ANY, "n_head": ANY, "n_embd": ANY, "block_size": ANY,
    "dropout": ANY, "position": {"rope"}, "head_bias": {True, False}}, devices=("cpu",))


class BatchRingDecoder:
    """One token for each of several sequences per step, each with its own rotary ring and
    position: the lean step's arithmetic on (B, C) rows. Rows stay packed (0..B-1): a sequence
    that ends hands its row to the last one. Tests hold each row to the lean decoder alone."""

    def __init__(self, model: GPT, capacity: int):
        refusal = BATCH.refusal(model.config, next(model.parameters()).device)
        if refusal:
            raise ValueError(refusal)
        self.lean = LeanDecoder(model)  # the same weights, gathered once (and checked)
        cfg = model.config
        self.W, self.nh, self.hs = cfg.block_size, cfg.n_head, cfg.head_size
        # per layer: [keys, values] x (capacity, nh, W, hs)
        self.rings = [torch.zeros(2, capacity, self.nh, self.W, self.hs) for _ in range(cfg.n_layer)]
        self.positions: list[int] = []
        self.capacity = capacity

    @property
    def rows(self) -> int:
        return len(self.positions)

    def add(self, cache: RingCache) -> int:
        """Take a sequence whose prompt was prefilled into a B=1 RingCache; returns its row."""
        if self.rows == self.capacity:
            raise ValueError(f"the batch holds {self.capacity} sequences at most")
        row = self.rows
        for ring, theirs in zip(self.rings, cache.rings):
            ring[:, row] = theirs[:, 0]
        self.positions.append(cache.seen)
        return row

    def remove(self, row: int) -> Optional[int]:
        """Free a row; the last row moves into it. Returns the moved row's old index (None
        when the freed row was the last)."""
        last = self.rows - 1
        if row != last:
            for ring in self.rings:
                ring[:, row] = ring[:, last]
            self.positions[row] = self.positions[last]
        self.positions.pop()
        return last if row != last else None

    @torch.no_grad()
    def step(self, tokens: list[int]) -> torch.Tensor:
        """Logits (B, V) for one new token per row (tokens[i] goes to row i)."""
        lean, B, W, nh, hs = self.lean, self.rows, self.W, self.nh, self.hs
        C = nh * hs
        pos = torch.tensor(self.positions)
        x = lean.wte[torch.tensor(tokens)]  # (B, C)
        cos, sin = lean.rotary.tables(0, int(pos.max()) + 1, x.device)
        cos, sin = cos[pos].view(B, 1, hs // 2), sin[pos].view(B, 1, hs // 2)
        # which ring slots each row may see: all once its window is full, else 0..position
        valid = (torch.arange(W)[None, :] <= pos[:, None]).view(B, 1, 1, W)
        slot, rows = pos % W, torch.arange(B)
        for ring, ((w1, b1, wa, ba, wp, bp, w2, b2, wf, bf, wm, bm), e1, e2) in zip(self.rings, lean.layers):
            qkv = F.linear(F.layer_norm(x, (C,), w1, b1, e1), wa, ba).view(B, 3, nh, hs)
            qk = rotate(qkv[:, :2], cos[:, None], sin[:, None])  # (B, 2, nh, hs)
            keys, values = ring[0, :B], ring[1, :B]  # views: rows are packed
            keys[rows, :, slot] = qk[:, 1]
            values[rows, :, slot] = qkv[:, 2]
            y = F.scaled_dot_product_attention(qk[:, 0].reshape(B, nh, 1, hs), keys, values, attn_mask=valid)
            x = x + F.linear(y.reshape(B, C), wp, bp)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (C,), w2, b2, e2), wf, bf)), wm, bm)
        self.positions = [p + 1 for p in self.positions]
        return F.linear(F.layer_norm(x, (C,), lean.lnf_w, lean.lnf_b, lean.lnf_eps), lean.head_w, lean.head_b)
