"""Optimizers: AdamW (fused on CPU) with decay on matrices only, or Muon for the hidden matrices.

Returns (optimizer, peak learning rate) pairs so the trainer can schedule each one.
"""

from __future__ import annotations

import torch

from playground.engine.config import TrainConfig
from playground.engine.model.gpt import GPT
from playground.engine.model.muon import Muon


def _fused_ok() -> bool:
    # fused AdamW runs on CPU since torch 2.4; older versions fall back to foreach
    try:
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)
        return True
    except (RuntimeError, TypeError):
        return False


_FUSED = None


def build_optimizers(model: GPT, cfg: TrainConfig) -> list[tuple[torch.optim.Optimizer, float]]:
    global _FUSED
    if _FUSED is None:
        _FUSED = _fused_ok()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    matrices = [p for n, p in named if p.dim() >= 2]
    vectors = [p for n, p in named if p.dim() < 2]  # biases and layer norms: no decay
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "muon":
        # Muon orthogonalises updates of the blocks' weight matrices; the embeddings and the
        # head are lookups/readouts and stay on AdamW, as Muon's authors recommend.
        hidden = [p for n, p in named if p.dim() == 2 and n.startswith("h.")]
        hidden_ids = {id(p) for p in hidden}
        other_matrices = [p for p in matrices if id(p) not in hidden_ids]
        adam = torch.optim.AdamW(
            [{"params": other_matrices, "weight_decay": cfg.weight_decay},
             {"params": vectors, "weight_decay": 0.0}],
            lr=cfg.learning_rate, betas=betas, fused=_FUSED)
        # on the CPU, float32 orthogonalisation (torch's runs in bfloat16: slow without AVX-512 BF16)
        kind = Muon if all(p.device.type == "cpu" for p in hidden) else torch.optim.Muon
        muon = kind(hidden, lr=cfg.muon_lr, weight_decay=cfg.weight_decay, adjust_lr_fn="original")
        return [(adam, cfg.learning_rate), (muon, cfg.muon_lr)]
    groups = ([{"params": matrices + vectors, "weight_decay": 0.0}] if cfg.weight_decay == 0 else
              [{"params": matrices, "weight_decay": cfg.weight_decay},
               {"params": vectors, "weight_decay": 0.0}])  # one group is one fused call
    adam = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=betas, fused=_FUSED)
    return [(adam, cfg.learning_rate)]
