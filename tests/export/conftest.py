"""Tiny models with seeded random weights, saved as model files, for the export tests.

The weights are pushed well away from their initialisation (and the head's bias away from
zero), so log-probabilities are far from uniform and a wrong mapping cannot hide."""

from pathlib import Path

import pytest
import torch

from playground.engine.config import ModelConfig
from playground.engine.data.tokenizer import CharTokenizer
from playground.engine.model import checkpoint
from playground.engine.model.gpt import GPT

TEXT = "to be or not to be, that is the question\n"       # 15 distinct characters
WIDE = TEXT + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"                # 41 distinct characters
BPE_TEXT = "Café au lait, naïve résumé 😀: to be or not to be\n" * 20


def random_model(tokenizer, seed: int = 0, **settings) -> GPT:
    settings = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 16} | settings
    torch.manual_seed(seed)
    model = GPT(ModelConfig(vocab_size=tokenizer.vocab_size, **settings))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def save(folder: Path, name: str, model: GPT, tokenizer) -> Path:
    state = {"start_char": TEXT[0]}
    return checkpoint.save(folder / name, checkpoint.Checkpoint(model, tokenizer, state=state))


@pytest.fixture
def char_checkpoint(tmp_path):
    """A learned-position character model with a head bias, 15 characters <= width 16 + 1."""
    tokenizer = CharTokenizer.from_text(TEXT)
    return save(tmp_path, "char", random_model(tokenizer), tokenizer)
