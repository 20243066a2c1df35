"""LoRA adapters on a model (made by peft): low-rank matrices beside the chosen projections of
every block, every other weight frozen; merged back into plain layers, the model is an ordinary
one again. Adapting a model to new text with them is training/adapt.py."""

from __future__ import annotations

import copy

import torch

from playground.engine.config import AdaptConfig


def add_adapters(model, adapt: AdaptConfig):
    """LoRA adapters on the chosen projections of every block; every other weight frozen."""
    from peft import LoraConfig, inject_adapter_in_model
    config = LoraConfig(r=adapt.rank, lora_alpha=adapt.alpha, target_modules=adapt.target_list(),
                        lora_dropout=0.0, bias="none")
    return inject_adapter_in_model(config, model)


def has_adapters(model) -> bool:
    return any(type(m).__module__.startswith("peft.") for m in model.modules())


def adapter_layers(model) -> list[tuple[str, torch.nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]


def merged(model):
    """A copy with each adapter merged into the weight beside it (by peft), as plain layers:
    an ordinary model that generates, saves, serves and exports like any other."""
    out = copy.deepcopy(model)
    for name, layer in adapter_layers(out):
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent_name), child, layer.base_layer)
    for p in out.parameters():
        p.requires_grad_(True)
    return out


def trainable(model) -> tuple[int, int]:
    """(parameters that train, all of them): '2,304 of 413,505 parameters, 0.56%'."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
