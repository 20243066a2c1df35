"""The training step's forward and backward written out by hand, for small models on the CPU.

At the sizes people train here (a 2x64 model on 7 merged windows), each operation's overhead
costs as much as its arithmetic, and autograd adds graph nodes and bookkeeping to every one.
This computes exactly GPT.forward's loss and the gradients autograd would give, with half the
dispatched operations (583 against 1,137 for a seed step, optimizer included) and no graph.
Tests hold every gradient to autograd's (tests/engine/test_fast_paths.py). It runs only the
configurations in HAND_STEP; anything else trains through autograd.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from playground.engine.fastpath import HAND_STEP, check_same_parameters
from playground.engine.model import GPT

aten = torch.ops.aten


class _Layer:
    """One block's weights, looked up once (module attribute lookups cost more than the
    small operations they feed). Views of the parameters: optimizers update them in place."""

    def __init__(self, block):
        ln1, attn, ln2, mlp = block.ln_1, block.attn, block.ln_2, block.mlp
        self.ln1, self.ln2 = _Norm(ln1), _Norm(ln2)
        self.qkv_w, self.qkv_b = attn.c_attn.weight.detach(), attn.c_attn.bias.detach()
        self.proj_w, self.proj_b = attn.c_proj.weight.detach(), attn.c_proj.bias.detach()
        self.fc_w, self.fc_b = mlp.c_fc.weight.detach(), mlp.c_fc.bias.detach()
        self.out_w, self.out_b = mlp.c_proj.weight.detach(), mlp.c_proj.bias.detach()
        # in the order backward() produces their gradients
        self.params = [mlp.c_proj.weight, mlp.c_proj.bias, mlp.c_fc.weight, mlp.c_fc.bias,
                       ln2.weight, ln2.bias, attn.c_proj.weight, attn.c_proj.bias,
                       attn.c_attn.weight, attn.c_attn.bias, ln1.weight, ln1.bias]


class _Norm:
    def __init__(self, ln):
        self.shape, self.eps = tuple(ln.normalized_shape), ln.eps
        self.w, self.b = ln.weight.detach(), ln.bias.detach()

    def forward(self, x):
        return aten.native_layer_norm(x, self.shape, self.w, self.b, self.eps)

    def backward(self, dout, x, mean, rstd, grads: "_Grads"):
        return aten.native_layer_norm_backward.out(
            dout, x, self.shape, mean, rstd, self.w, self.b, [True, True, True],
            out0=torch.empty_like(x), out1=grads.next(), out2=grads.next())[0]


class HandStep:
    """step(idx, targets, weights) -> the loss, with every parameter's .grad set.

    Per block the forward keeps what the backward reads (layer-norm statistics, attention
    probabilities, the MLP's pre-activation); N = B*T rows of width C.
    """

    def __init__(self, model: GPT):
        refusal = HAND_STEP.refusal(model.config, next(model.parameters()).device)
        if refusal:
            raise ValueError(refusal)
        self.model = model
        self._bind(model)
        check_same_parameters(HAND_STEP.name, self.params, model)

    def _bind(self, model: GPT) -> None:
        cfg = model.config
        self.block_size, self.C, self.nh = cfg.block_size, cfg.n_embd, cfg.n_head
        self.hs = self.C // self.nh
        self.scale = 1.0 / math.sqrt(self.hs)
        self.layers = [_Layer(block) for block in model.h]
        self.wte, self.wpe = model.wte.weight.detach(), model.wpe.weight.detach()
        self.ln_f = _Norm(model.ln_f)
        head = model.lm_head
        self.head_w = head.weight.detach()
        self.head_b = head.bias.detach() if head.bias is not None else None
        self.params = [head.weight] + ([head.bias] if head.bias is not None else []) + \
            [model.ln_f.weight, model.ln_f.bias]
        for layer in reversed(self.layers):
            self.params += layer.params
        self.params += [model.wpe.weight, model.wte.weight]
        self.storage = [p.data_ptr() for p in self.params]
        self.masks: dict[int, torch.Tensor] = {}

    def _mask(self, T: int) -> torch.Tensor:
        if T not in self.masks:  # -inf above the diagonal: no looking at the future
            self.masks[T] = torch.full((T, T), float("-inf")).triu_(1)
        return self.masks[T]

    @torch.no_grad()
    def __call__(self, idx: torch.Tensor, targets: torch.Tensor,
                 weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        B, T = idx.shape
        if T > self.block_size:
            raise ValueError(f"sequence of {T} exceeds block size {self.block_size}")
        if [p.data_ptr() for p in self.params] != self.storage:
            self._bind(self.model)  # parameters moved to new storage (a later FlatAdamW): look again
        x = (self.wte[idx] + self.wpe[:T]).view(B * T, self.C)
        saved = []
        for layer in self.layers:
            saved.append(x)
            x = self._block_forward(layer, x, B, T, saved)
        h, mean, rstd = self.ln_f.forward(x)
        logits = h @ self.head_w.t() if self.head_b is None else torch.addmm(self.head_b, h, self.head_w.t())
        loss, dlogits = _cross_entropy(logits, targets.reshape(-1), weights, T)
        # ---- backward, last layer first, into each parameter's .grad in self.params order
        grads = _Grads(self.params)
        grads.mm(dlogits.t(), h)
        if self.head_b is not None:
            grads.sum(dlogits)
        dx = self.ln_f.backward(dlogits @ self.head_w, x, mean, rstd, grads)
        for layer in reversed(self.layers):
            dx = self._block_backward(layer, dx, saved, B, T, grads)
        wpe = grads.next()
        torch.sum(dx.view(B, T, self.C), 0, out=wpe[:T])
        wpe[T:].zero_()  # positions past T had no part in this loss
        grads.next().zero_().index_add_(0, idx.reshape(-1), dx)
        return loss

    # -- one block ------------------------------------------------------------------------
    def _block_forward(self, L: _Layer, x: torch.Tensor, B: int, T: int, saved: list):
        C, nh, hs = self.C, self.nh, self.hs
        h1, m1, r1 = L.ln1.forward(x)
        qkv = torch.addmm(L.qkv_b, h1, L.qkv_w.t())
        # (B, T, [q|k|v], nh, hs) -> one copy to ([q|k|v], B*nh, T, hs)
        q, k, v = qkv.view(B, T, 3, nh, hs).permute(2, 0, 3, 1, 4).reshape(3, B * nh, T, hs)
        # scale * q k^T, with -inf above the diagonal, in one call: (B*nh, T, T)
        probs = torch.baddbmm(self._mask(T), q, k.transpose(1, 2), alpha=self.scale).softmax(-1)
        y = torch.bmm(probs, v).view(B, nh, T, hs).transpose(1, 2).reshape(B * T, C)
        x_mid = torch.addmm(L.proj_b, y, L.proj_w.t()).add_(x)
        h2, m2, r2 = L.ln2.forward(x_mid)
        pre = torch.addmm(L.fc_b, h2, L.fc_w.t())
        act = F.gelu(pre)
        saved.append((h1, m1, r1, q, k, v, probs, y, x_mid, h2, m2, r2, pre, act))
        return torch.addmm(L.out_b, act, L.out_w.t()).add_(x_mid)

    def _block_backward(self, L: _Layer, dx: torch.Tensor, saved: list, B: int, T: int,
                        grads: "_Grads") -> torch.Tensor:
        h1, m1, r1, q, k, v, probs, y, x_mid, h2, m2, r2, pre, act = saved.pop()
        x = saved.pop()
        # MLP: out = x_mid + out_proj(gelu(fc(ln2(x_mid))))
        dpre = aten.gelu_backward(dx @ L.out_w, pre)
        grads.mm(dx.t(), act)
        grads.sum(dx)
        grads.mm(dpre.t(), h2)
        grads.sum(dpre)
        dx = dx + L.ln2.backward(dpre @ L.fc_w, x_mid, m2, r2, grads)
        # attention: x_mid = x + proj(attend(qkv(ln1(x))))
        grads.mm(dx.t(), y)
        grads.sum(dx)
        dy = (dx @ L.proj_w).view(B, T, self.nh, self.hs).transpose(1, 2)
        dqkv = self._attention_backward(dy.reshape(B * self.nh, T, self.hs), q, k, v, probs)
        # ([q|k|v], B, nh, T, hs) -> (B, T, [q|k|v], nh, hs): the layout of c_attn's output
        dqkv = dqkv.view(3, B, self.nh, T, self.hs).permute(1, 3, 0, 2, 4).reshape(B * T, 3 * self.C)
        grads.mm(dqkv.t(), h1)
        grads.sum(dqkv)
        return dx + L.ln1.backward(dqkv @ L.qkv_w, x, m1, r1, grads)

    def _attention_backward(self, dy, q, k, v, probs) -> torch.Tensor:
        """Gradients of (q, k, v), stacked as ([q|k|v], B*nh, T, hs)."""
        dqkv = torch.empty((3,) + q.shape)
        torch.bmm(probs.transpose(1, 2), dy, out=dqkv[2])
        dscores = aten._softmax_backward_data(torch.bmm(dy, v.transpose(1, 2)), probs, -1, probs.dtype)
        torch.baddbmm(dqkv[0], dscores, k, beta=0, alpha=self.scale, out=dqkv[0])
        torch.baddbmm(dqkv[1], dscores.transpose(1, 2), q, beta=0, alpha=self.scale, out=dqkv[1])
        return dqkv


class _Grads:
    """Each parameter's gradient, written in place, in turn: into its existing .grad (which
    may be a view of FlatAdamW's buffer) or a new tensor the first time."""

    def __init__(self, params: list[torch.Tensor]):
        for p in params:
            if p.grad is None or p.grad.shape != p.shape:
                p.grad = torch.empty_like(p)
        self.dest = iter([p.grad for p in params])

    def next(self) -> torch.Tensor:
        return next(self.dest)

    def mm(self, a: torch.Tensor, b: torch.Tensor) -> None:
        torch.mm(a, b, out=self.next())

    def sum(self, rows: torch.Tensor) -> None:
        torch.sum(rows, 0, out=self.next())


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: Optional[torch.Tensor],
                   T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """GPT.forward's loss (each row's mean, weighted) and its gradient with respect to logits."""
    N = logits.size(0)
    share = (torch.full((N, 1), 1.0 / N) if weights is None
             else (weights / T).repeat_interleave(T)[:, None])  # each position's share of the loss
    logp = logits.log_softmax(-1)
    loss = -(logp.gather(1, targets[:, None]) * share).sum()
    # (softmax - one_hot(target)) * share
    dlogits = logp.exp_().mul_(share).scatter_add_(1, targets[:, None], share.neg())
    return loss, dlogits
