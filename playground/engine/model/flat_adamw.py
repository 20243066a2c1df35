"""AdamW over one flat buffer per parameter group, on the CPU.

A small model has ~30 parameter tensors and the fused AdamW kernel pays per tensor: at the
seed size one step costs about 200 us over 30 tensors against 30 us over one buffer of the same
numbers. The model's parameters and gradients become views into the flat buffers, so the
gradient norm and the trainer's last-good copy are one operation each as well.
"""

from __future__ import annotations

import torch

from playground.engine.model.fastpath import FLAT_ADAMW, check_same_parameters


class FlatAdamW:
    """Steps like `inner` (a torch AdamW), on flat buffers; checkpoints see `inner`.

    `inner` keeps its per-parameter state as views of the same moment buffers, so
    state_dict()/load_state_dict() keep torch's format: a checkpoint from this optimizer
    resumes with a plain AdamW and the other way round. Gradients must be written into the
    parameters' existing .grad views (autograd accumulates into them in place); setting .grad
    to new tensors would detach them from the buffers, so zero_grad() zeroes in place.
    """

    def __init__(self, inner: torch.optim.AdamW, model: torch.nn.Module):
        refusal = FLAT_ADAMW.refusal(model.config, next(model.parameters()).device)
        if refusal:
            raise ValueError(refusal)
        if any(group["amsgrad"] for group in inner.param_groups):
            raise ValueError("FlatAdamW does not cover amsgrad")
        check_same_parameters(FLAT_ADAMW.name, [p for g in inner.param_groups for p in g["params"]], model)
        self.inner = inner
        self.params: list[torch.nn.Parameter] = []  # one flat parameter per group
        groups = []
        for group in inner.param_groups:
            flat = torch.nn.Parameter(torch.cat([p.detach().reshape(-1) for p in group["params"]]))
            flat.grad = torch.zeros_like(flat)
            for p, (start, end) in zip(group["params"], _spans(group["params"])):
                p.data = flat.data[start:end].view_as(p)
                p.grad = flat.grad[start:end].view_as(p)
            self.params.append(flat)
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": [flat]})
        defaults = {k: v for k, v in inner.defaults.items() if k != "decoupled_weight_decay"}
        self.opt = torch.optim.AdamW(groups, **defaults)
        # the kernel torch's AdamW(fused=True) runs; None: step through the optimizer instead
        self._kernel = getattr(torch, "_fused_adamw_", None) if defaults.get("fused") else None
        self._share_state()

    def _share_state(self) -> None:
        """Moments in flat buffers; inner's per-parameter state viewing them (values kept)."""
        for group, flat in zip(self.inner.param_groups, self.params):
            state = self.opt.state.get(flat) or {
                "step": torch.zeros((), dtype=torch.float32),
                "exp_avg": torch.zeros_like(flat), "exp_avg_sq": torch.zeros_like(flat)}
            for p, (start, end) in zip(group["params"], _spans(group["params"])):
                old = self.inner.state.get(p)
                if old:  # a loaded or earlier state: its values move into the buffers
                    for key in ("exp_avg", "exp_avg_sq"):
                        state[key][start:end].copy_(old[key].reshape(-1))
                    state["step"].fill_(float(old["step"]))
                self.inner.state[p] = {"step": state["step"],
                                       "exp_avg": state["exp_avg"][start:end].view_as(p),
                                       "exp_avg_sq": state["exp_avg_sq"][start:end].view_as(p)}
            self.opt.state[flat] = state

    @property
    def param_groups(self) -> list[dict]:
        return self.opt.param_groups

    @torch.no_grad()
    def step(self) -> None:
        """One AdamW update: the fused kernel torch's AdamW(fused=True) runs, called directly;
        the optimizer's own step() adds ~130 us of per-call bookkeeping at this size (tests
        hold the result to torch.optim.AdamW's)."""
        kernel = self._kernel
        if kernel is None:
            self.opt.step()
            return
        for group, flat in zip(self.opt.param_groups, self.params):
            state = self.opt.state[flat]
            state["step"].add_(1)
            beta1, beta2 = group["betas"]
            kernel([flat], [flat.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [],
                   [state["step"]], amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
                   weight_decay=group["weight_decay"], eps=group["eps"],
                   maximize=group["maximize"], grad_scale=None, found_inf=None)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for flat in self.params:
            flat.grad.zero_()

    def state_dict(self) -> dict:
        """torch AdamW's per-parameter format, with tensors of their own (not views)."""
        for mine, theirs in zip(self.opt.param_groups, self.inner.param_groups):
            theirs.update({k: v for k, v in mine.items() if k != "params"})
        sd = self.inner.state_dict()
        sd["state"] = {i: {k: v.clone() for k, v in s.items()} for i, s in sd["state"].items()}
        return sd

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)  # torch checks groups and sizes
        for mine, theirs in zip(self.opt.param_groups, self.inner.param_groups):
            mine.update({k: v for k, v in theirs.items() if k != "params"})
        self._share_state()


def _spans(params: list[torch.Tensor]) -> list[tuple[int, int]]:
    spans, start = [], 0
    for p in params:
        spans.append((start, start + p.numel()))
        start += p.numel()
    return spans
