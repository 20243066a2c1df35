"""The GPT, top to bottom: CausalSelfAttention -> MLP -> Block -> GPT.

Token + learned position embeddings, pre-layer-norm blocks with residuals, a final layer norm
and a linear head with bias (the reference 2x64 model on 13 characters has 103,821 parameters).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from playground.engine.config import ModelConfig


class KVCache:
    """Keys and values of the positions seen so far, one pair per layer, for generation.

    Learned positions: keys grow until the block is full (then the sampler recomputes).
    Rotary positions (window W): a ring of W slots per layer, slot = position % W, holding
    exactly the positions the next character may attend to. Attention ignores key order
    (positions are rotated into the keys), so the ring rolls on forever at constant cost.
    """

    def __init__(self, n_layer: int, window: Optional[int] = None):
        self.keys: list[Optional[torch.Tensor]] = [None] * n_layer
        self.values: list[Optional[torch.Tensor]] = [None] * n_layer
        self.window = window
        self.seen = 0  # positions fed so far: the next token's position
        self.plan: Optional[list] = None  # decode_step's weights, gathered once per cache


class Rotary:
    """Rotary position tables (cos, sin), grown on demand; not part of the weights."""

    def __init__(self, head_size: int, base: float = 10000.0):
        self.inv_freq = 1.0 / (base ** (torch.arange(0, head_size, 2).float() / head_size))
        self.cos = self.sin = torch.empty(0)

    def tables(self, start: int, T: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cos.size(0) < start + T or self.cos.device != device:
            n = max(start + T, 2 * self.cos.size(0), 256)
            angles = torch.outer(torch.arange(n, device=device).float(), self.inv_freq.to(device))
            # (n, 1, 1, hs/2): broadcasts over (B, T, [q|k], nh, hs/2)
            self.cos, self.sin = angles.cos()[:, None, None], angles.sin()[:, None, None]
        return self.cos[start:start + T], self.sin[start:start + T]


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair of channels (i, i + hs/2) of x (..., hs) by its position's angle."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def attention_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: Optional[int]) -> torch.Tensor:
    """True where a query may attend a key: not in the future, and within the window."""
    allowed = k_pos[None, :] <= q_pos[:, None]
    if window is not None:
        allowed &= k_pos[None, :] > q_pos[:, None] - window
    return allowed


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        # one matmul makes queries, keys and values for all heads at once
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.rotary = Rotary(config.head_size) if config.position == "rope" else None
        self.window = config.block_size if config.position == "rope" else None

    def _heads(self, x: torch.Tensor, start: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = x.size()
        qkv = self.c_attn(x).view(B, T, 3, self.n_head, C // self.n_head)
        if self.rotary is not None:
            cos, sin = self.rotary.tables(start, T, x.device)
            qk = rotate(qkv[:, :, :2], cos, sin)  # queries and keys in one go
            q, k = qk[:, :, 0], qk[:, :, 1]
        else:
            q, k = qkv[:, :, 0], qkv[:, :, 1]
        # (B, T, nh, hs) -> (B, nh, T, hs)
        return q.transpose(1, 2), k.transpose(1, 2), qkv[:, :, 2].transpose(1, 2)

    def forward(self, x: torch.Tensor, start: int = 0, cache: Optional[KVCache] = None,
                layer: int = 0) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self._heads(x, start)
        p = self.dropout if self.training else 0.0
        if cache is not None and self.window is not None:
            y = self._ring(q, k, v, start, cache, layer)
        elif cache is not None:
            past = 0 if cache.keys[layer] is None else cache.keys[layer].size(2)
            if past:
                k = torch.cat([cache.keys[layer], k], dim=2)
                v = torch.cat([cache.values[layer], v], dim=2)
            cache.keys[layer], cache.values[layer] = k, v
            if T == 1:  # one new query may see every cached key
                y = F.scaled_dot_product_attention(q, k, v)
            elif past == 0:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                mask = attention_mask(torch.arange(start, start + T), torch.arange(past + T), None)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        elif self.window is not None and T > self.window:
            positions = torch.arange(start, start + T)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attention_mask(positions, positions, self.window), dropout_p=p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads side by side
        return self.resid_dropout(self.c_proj(y))

    def _ring(self, q, k, v, start: int, cache: KVCache, layer: int) -> torch.Tensor:
        B, nh, T, hs = q.shape
        W = self.window
        if cache.keys[layer] is None:  # [keys, values] x (B, nh, W, hs)
            cache.keys[layer] = k.new_zeros(2, B, nh, W, hs)
        ring_k, ring_v = cache.keys[layer][0], cache.keys[layer][1]
        if T == 1:
            slot = start % W
            ring_k[:, :, slot] = k[:, :, 0].detach()  # a cache is never part of a gradient
            ring_v[:, :, slot] = v[:, :, 0].detach()
            valid = None if start + 1 >= W else (torch.arange(W) <= start)[None, :]
            return F.scaled_dot_product_attention(q, ring_k, ring_v, attn_mask=valid)
        # a prefill: plain windowed attention, then the last W positions go into the ring
        positions = torch.arange(start, start + T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask(positions, positions, W))
        keep = min(T, W)
        slots = positions[T - keep:] % W
        ring_k[:, :, slots] = k[:, :, T - keep:].detach()
        ring_v[:, :, slots] = v[:, :, T - keep:].detach()
        return y

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (B, nh, T, T), computed explicitly for display only."""
        q, k, _ = self._heads(x, 0)
        positions = torch.arange(x.size(1), device=x.device)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        allowed = attention_mask(positions, positions, self.window)
        return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, start: int = 0, cache: Optional[KVCache] = None,
                layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), start, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.check()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        # learned absolute positions (the reference); rotary positions live inside attention
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.position == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections so the residual stream's variance stays put
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def new_cache(self) -> KVCache:
        window = self.config.block_size if self.config.position == "rope" else None
        return KVCache(self.config.n_layer, window)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None,
                cache: Optional[KVCache] = None, last_only: bool = False,
                weights: Optional[torch.Tensor] = None
                ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """idx (B, T) -> logits (B, T, V) and the mean cross-entropy when targets are given.

        With a cache, idx holds only the new positions, which follow the cached ones.
        last_only computes logits for the final position alone (sampling needs no more).
        weights (B,), summing to 1, weigh each row's mean loss (merged repeated windows).
        """
        B, T = idx.size()
        start = cache.seen if cache is not None else 0
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            if start + T > self.config.block_size:
                raise ValueError(f"sequence of {start + T} exceeds block size {self.config.block_size}")
            x = x + self.wpe(torch.arange(start, start + T, device=idx.device))
        x = self.drop(x)
        for i, block in enumerate(self.h):
            x = block(x, start, cache, i)
        if cache is not None:
            cache.seen += T
        if last_only:
            x = x[:, -1:, :]
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits, None
        if weights is None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))
        else:
            per_token = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1),
                                        reduction="none").view(B, T)
            loss = (per_token.mean(dim=1) * weights).sum()
        return logits, loss

    def decode_step(self, token: int, cache: KVCache) -> torch.Tensor:
        """Logits (V,) for one new token with a rolling (rotary) cache: the same arithmetic as
        forward(), written with bare functional calls on (1, C) rows on detached weights,
        because at batch 1 the cost is per operation (and per autograd check), not per FLOP.
        Tests hold it to forward()'s probabilities."""
        cfg = self.config
        C, nh, W, pos = cfg.n_embd, cfg.n_head, cfg.block_size, cache.seen
        hs, slot = C // nh, cache.seen % W
        if cache.plan is None:  # gathered once: module lookups cost more than the arithmetic
            cache.plan = self._decode_plan()
        wte, lnf_w, lnf_b, lnf_e, head_w, head_b, layers = cache.plan
        x = wte[token].view(1, C)
        valid = None if pos + 1 >= W else (torch.arange(W) <= pos)[None, :]
        cos, sin = self.h[0].attn.rotary.tables(pos, 1, x.device)  # the same for every layer
        cos, sin = cos[0], sin[0]
        for i, (w1, b1, e1, wa, ba, wp, bp, w2, b2, e2, wf, bf, wm, bm) in enumerate(layers):
            if cache.keys[i] is None:  # one ring per layer: [keys, values] x (B=1, nh, W, hs)
                cache.keys[i] = x.new_zeros(2, 1, nh, W, hs)
            ring = cache.keys[i]
            qkv = F.linear(F.layer_norm(x, (C,), w1, b1, e1), wa, ba).view(3, nh, hs)
            qk = rotate(qkv[:2], cos, sin)  # (2, nh, hs)
            ring[0, 0, :, slot] = qk[1]
            ring[1, 0, :, slot] = qkv[2]
            y = F.scaled_dot_product_attention(qk[0].view(1, nh, 1, hs), ring[0], ring[1], attn_mask=valid)
            x = x + F.linear(y.view(1, C), wp, bp)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (C,), w2, b2, e2), wf, bf)), wm, bm)
        cache.seen += 1
        return F.linear(F.layer_norm(x, (C,), lnf_w, lnf_b, lnf_e), head_w, head_b)[0]

    def _decode_plan(self) -> tuple:
        d = lambda t: t.detach()  # noqa: E731  (no autograd bookkeeping per operation)
        layers = [(d(b.ln_1.weight), d(b.ln_1.bias), b.ln_1.eps, d(b.attn.c_attn.weight),
                   d(b.attn.c_attn.bias), d(b.attn.c_proj.weight), d(b.attn.c_proj.bias),
                   d(b.ln_2.weight), d(b.ln_2.bias), b.ln_2.eps, d(b.mlp.c_fc.weight),
                   d(b.mlp.c_fc.bias), d(b.mlp.c_proj.weight), d(b.mlp.c_proj.bias)) for b in self.h]
        return (d(self.wte.weight), d(self.ln_f.weight), d(self.ln_f.bias), self.ln_f.eps,
                d(self.lm_head.weight), d(self.lm_head.bias), layers)

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """Attention probabilities for every layer and head: (n_layer, B, nh, T, T)."""
        pos = torch.arange(idx.size(1), device=idx.device)
        x = self.wte(idx) if self.wpe is None else self.wte(idx) + self.wpe(pos)
        maps = []
        for block in self.h:
            maps.append(block.attn.weights(block.ln_1(x)))
            x = block(x)
        return torch.stack(maps)
