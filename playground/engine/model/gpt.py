"""The GPT, top to bottom: positions -> CausalSelfAttention -> MLP -> Block -> GPT.

Token + position embeddings, pre-layer-norm blocks with residuals, a final layer norm and a
linear head with bias (the reference 2x64 model on 13 characters has 103,821 parameters; the
bias is optional, for exact exports).
This file is the one statement of the architecture: training, evaluation and generation's
prefill all run GPT.forward. What goes faster lives beside it and is held to it by tests:
the caches and the cached step (decoding.py).
"""

from __future__ import annotations

import math
from typing import Optional, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F

from playground.engine.config import ModelConfig


# -- positions ------------------------------------------------------------------------------
class Rotary:
    """Rotary position tables (cos, sin), grown on demand; not part of the weights."""

    def __init__(self, head_size: int, base: float = 10000.0):
        # (on the CPU even in a model built on the meta device: GPT.unset)
        self.inv_freq = 1.0 / (base ** (torch.arange(0, head_size, 2, device="cpu").float() / head_size))
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


def probabilities(q: torch.Tensor, k: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Attention probabilities (B, nh, T, T) of queries over keys, computed explicitly."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
    return scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)


# -- dropout --------------------------------------------------------------------------------
DROP_LEVELS = 65536  # a CPU mask draws 16 random bits an element: p is rounded to 1/65,536


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) while training.
    On the CPU the masks cost less than F.dropout's: four elements' 16 random bits come from
    one 64-bit draw, where bernoulli_ draws one random number an element (six times slower
    here; the masks were a fifth of a training step with dropout, issue 26). The probability
    is p rounded to 1/65,536. Elsewhere (CUDA, MPS) F.dropout, whose kernels are fused."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    dropped = round(p * DROP_LEVELS)
    if dropped == 0:
        return x
    if dropped == DROP_LEVELS:
        return x * 0.0
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-2 ** 63, None)
    # uniform 16-bit numbers from -32768: a share dropped / 65536 of them fall below the line
    keep = bits.view(torch.int16)[:n].view(x.shape) >= dropped - DROP_LEVELS // 2
    scale = DROP_LEVELS / (DROP_LEVELS - dropped)
    if x.dtype in (torch.float32, torch.float64):
        return x * keep.to(x.dtype).mul_(scale)
    return x * keep.to(x.dtype) * scale  # (bf16 would round the scale itself: a bias on every element)


class Dropout(nn.Module):
    """nn.Dropout with dropout() above (its masks cost less on the CPU)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Cache(Protocol):
    """What attention needs from a generation cache (decoding.py has the two kinds)."""

    seen: int  # positions fed so far: the first new token's position

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int
               ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Store the new keys and values (B, nh, T, hs); return every key and value the new
        queries may look at, and the mask saying which (None: all of them)."""


# -- the blocks -----------------------------------------------------------------------------
class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        # one matmul makes queries, keys and values for all heads at once
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout if config.attention_dropout else 0.0  # on the probabilities
        self.layer = layer  # which of a cache's layers holds this one's keys and values
        rope = config.position == "rope"
        self.rotary = Rotary(config.head_size, config.rope_base) if rope else None
        # rotary models attend to the last block_size positions only, at every layer
        self.window = config.block_size if rope else None

    def heads(self, x: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys and values (B, nh, T, hs) of x (B, T, C), positions from start on."""
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

    def forward(self, x: torch.Tensor, start: int = 0, cache: Optional[Cache] = None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.heads(x, start)
        p = self.dropout if self.training else 0.0
        if cache is not None:  # earlier positions' keys and values come from the cache
            k, v, mask = cache.update(self.layer, k, v, start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        elif p > 0 and x.device.type == "cpu":
            # with dropout, the CPU's attention leaves its fused kernel for this same explicit
            # arithmetic, and draws its masks one random number an element: ours cost less
            y = dropout(probabilities(q, k, self.allowed(start, T, x.device)), p) @ v
        elif self.window is not None and T > self.window:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.allowed(start, T, x.device), dropout_p=p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads side by side
        return self.resid_dropout(self.c_proj(y))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Attention probabilities (B, nh, T, T), computed explicitly for display only."""
        q, k, _ = self.heads(x, 0)
        return probabilities(q, k, self.allowed(0, x.size(1), x.device))

    def allowed(self, start: int, T: int, device) -> torch.Tensor:
        """attention_mask for T positions from start, among themselves, with this layer's window."""
        positions = torch.arange(start, start + T, device=device)
        return attention_mask(positions, positions, self.window)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd)
        # the exact GELU (erf) by default; GPT-2's tanh approximation for models opened from it
        self.gelu = nn.GELU(approximate="tanh" if config.activation == "gelu_tanh" else "none")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd)
        self.dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: ModelConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, start: int = 0, cache: Optional[Cache] = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), start, cache)
        return x + self.mlp(self.ln_2(x))


# -- the model ------------------------------------------------------------------------------
class GPT(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.check()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        # learned absolute positions (the reference); rotary positions live inside attention
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.position == "learned" else None
        self.drop = Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=config.head_bias)
        if config.tie_embeddings:  # one matrix reads tokens in and writes them out (GPT-2)
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections so the residual stream's variance stays put
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @classmethod
    def unset(cls, config: ModelConfig) -> "GPT":
        """A GPT on the CPU whose weights are allocated but not set (neither initialised nor
        zeroed), for a state dict that then sets every one of them (checkpoint.load,
        hf_folder.load): GPT-2 small's random initialisation took 2.7 s of a 4.2 s load."""
        with torch.device("meta"):
            model = cls(config)
        model = model.to_empty(device="cpu")
        if config.tie_embeddings:  # (to_empty makes each module's tensors anew)
            model.lm_head.weight = model.wte.weight
        return model

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor, targets: Optional[torch.Tensor] = None,
                cache: Optional[Cache] = None, last_only: bool = False,
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
        for block in self.h:
            x = block(x, start, cache)
        if cache is not None:
            cache.seen += T
        if last_only:
            x = x[:, -1:, :]
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits, None
        flat_logits, flat_targets = logits.view(-1, logits.size(-1)), targets.reshape(-1)
        if weights is None:
            return logits, F.cross_entropy(flat_logits, flat_targets)
        # each row's mean loss, weighted by its share of the batch
        per_token = F.cross_entropy(flat_logits, flat_targets, reduction="none").view(B, T)
        return logits, (per_token.mean(dim=1) * weights).sum()

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> torch.Tensor:
        """Attention probabilities for every layer and head: (n_layer, B, nh, T, T)."""
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(idx.size(1), device=idx.device))
        maps = []
        for block in self.h:
            maps.append(block.attn.weights(block.ln_1(x)))
            x = block(x)
        return torch.stack(maps)
