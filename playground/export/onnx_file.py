"""Our GPT as one ONNX file: input_ids (batch, sequence) -> logits (batch, sequence, vocab),
weights inside, opset 18, through torch.onnx's dynamo exporter.

GPT.forward branches in Python on the sequence length and caches its rotary tables, which an
exported graph cannot keep; `Logits` states the same forward without them (one explicit
attention mask, rotary angles from the positions) and the export's verification holds it to
GPT.forward. Learned positions take up to block_size tokens; rotary ones any number.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from playground.engine.model.gpt import GPT, attention_mask, rotate

OPSET = 18


class Logits(nn.Module):
    """GPT.forward with no cache and no branch on the sequence length: idx (B, T) -> (B, T, V)."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model
        rope = model.config.position == "rope"
        self.window = model.config.block_size if rope else None
        self.inv_freq = model.h[0].attn.rotary.inv_freq.clone() if rope else None

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        m, (B, T) = self.model, idx.shape
        C, nh = m.config.n_embd, m.config.n_head
        positions = torch.arange(T, device=idx.device)
        x = m.wte(idx)  # (B, T, C)
        if m.wpe is not None:
            x = x + m.wpe(positions)
        mask = attention_mask(positions, positions, self.window)  # (T, T)
        if self.inv_freq is not None:
            angles = torch.outer(positions.float(), self.inv_freq)
            cos, sin = angles.cos()[:, None, None], angles.sin()[:, None, None]  # (T, 1, 1, hs/2)
        for block in m.h:
            qkv = block.attn.c_attn(block.ln_1(x)).view(B, T, 3, nh, C // nh)
            qk = rotate(qkv[:, :, :2], cos, sin) if self.inv_freq is not None else qkv[:, :, :2]
            # (B, T, nh, hs) -> (B, nh, T, hs)
            q, k, v = (t.transpose(1, 2) for t in (qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2]))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x + block.attn.c_proj(y.transpose(1, 2).reshape(B, T, C))
            x = x + block.mlp(block.ln_2(x))
        return m.lm_head(m.ln_f(x))


def write(model: GPT, path: Path) -> None:
    """Export the model to `path`, weights inside the file."""
    from torch.export import Dim
    config = model.config
    wrapper = Logits(model).eval()
    # batch 2 and length 2 or more: an example size of 1 would be fixed into the graph
    example = torch.zeros(2, max(2, min(config.block_size, 8)), dtype=torch.long)
    if config.position == "learned":
        sequence = Dim("sequence", max=config.block_size) if config.block_size > 1 else None
        if config.block_size == 1:
            example = example[:, :1]
    else:
        sequence = Dim("sequence")
    shapes = {0: Dim("batch")} | ({1: sequence} if sequence is not None else {})
    with _quiet(), torch.no_grad():
        torch.onnx.export(wrapper, (example,), str(path), input_names=["input_ids"],
                          output_names=["logits"], dynamic_shapes=(shapes,), opset_version=OPSET,
                          external_data=False, dynamo=True, verbose=False)


class _quiet:
    """Silence the exporter's chatter (missing torchvision, deprecations) while it runs."""

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._logger = logging.getLogger("torch.onnx")
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self._logger.setLevel(self._level)
        self._warnings.__exit__(*exc)


def session_logits(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The exported file as a function ids (B, T) -> logits (B, T, V), run by onnxruntime."""
    import onnxruntime
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(ids: torch.Tensor) -> torch.Tensor:
        out = session.run(["logits"], {"input_ids": ids.numpy().astype(np.int64)})[0]
        return torch.from_numpy(out)
    return run
