"""Looking inside a model: the logit lens (what each layer would predict if the model stopped
there), induction scores (heads that copy what followed a token last time), the embedding map
(PCA to 2-D, signs kept from frame to frame) and where a text surprises it. Plain numbers out,
for the command line, the window and notebooks alike; the model's own blocks do the work."""

from __future__ import annotations

import unicodedata
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

from playground.engine.data.tokenizer import Tokenizer
from playground.engine.errors import PromptError
from playground.engine.model.gpt import GPT

TOP_K = 5             # candidates kept at each position of a surprise reading
PROBE_LENGTH = 32     # tokens in each half of the induction probe, at most
PROBE_BATCH = 8       # probes averaged: one random sequence is a noisy measure
NO_POSITION_TABLE = ("this model uses rotary positions: each head turns its queries and keys by an "
                     "angle that grows with the position, so a position is not a vector added to "
                     "the input and there is no table to draw")


@contextmanager
def evaluating(model: GPT) -> Iterator[GPT]:
    """The model without dropout and gradients for the reading; its mode put back after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def device_of(model: GPT) -> torch.device:
    return next(model.parameters()).device


def prompt_ids(tokenizer: Tokenizer, prompt: str, block: Optional[int] = None,
               least: int = 1) -> tuple[list[int], int]:
    """The prompt's ids, every character known (an unknown one would shift every position, so
    it is refused by name, not dropped), and how many were cut from the front to fit the block."""
    if not prompt:
        raise PromptError("the text is empty: give some text to look at")
    ids = tokenizer.encode(prompt)
    if len(ids) < least:
        raise PromptError(f"the text needs at least {least} {tokenizer.unit}; it has {len(ids)}")
    if block is None or len(ids) <= block:
        return ids, 0
    return ids[-block:], len(ids) - block


# -- the logit lens -------------------------------------------------------------------------
def residual_stream(model: GPT, idx: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream (B, T, C) after the embeddings and after each block: the start of
    GPT.forward, one block at a time."""
    x = model.wte(idx)
    if model.wpe is not None:
        x = x + model.wpe(torch.arange(idx.size(1), device=idx.device))
    stream = [x]
    for block in model.h:
        x = block(x)
        stream.append(x)
    return stream


def lens_probs(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """(n_layer + 1, B, T, V): the next-token probabilities read off the stream at each depth
    by the model's own final layer norm and head; the last is the model's output."""
    with evaluating(model):
        return torch.stack([model.lm_head(model.ln_f(x)).float().softmax(-1)
                            for x in residual_stream(model, idx)])


@dataclass(frozen=True)
class Lens:
    tokens: list[str]                    # the prompt's tokens, as a person reads them
    layers: list[str]                    # where the stream was read: "embeddings", "block 1", ...
    top: list[list[str]]                 # [layer][position]: the likeliest next token there
    top_prob: list[list[float]]          # its probability
    next_prob: list[list[Optional[float]]]  # the probability of the token that does come next
    dropped: int = 0                     # tokens cut from the front of the prompt to fit the block

    def to_dict(self) -> dict:
        return asdict(self)


def logit_lens(model: GPT, tokenizer: Tokenizer, prompt: str) -> Lens:
    """What each layer would predict at each position of the prompt (the last block_size tokens)."""
    ids, dropped = prompt_ids(tokenizer, prompt, model.config.block_size)
    probs = lens_probs(model, torch.tensor([ids], device=device_of(model)))[:, 0].cpu()  # (L+1, T, V)
    top_prob, top_id = probs.max(dim=-1)                           # (L+1, T)
    following = torch.tensor(ids[1:])
    nxt = probs[:, :-1].gather(-1, following[None, :, None].expand(len(probs), -1, 1))[..., 0]
    return Lens(tokens=[tokenizer.label(i) for i in ids],
                layers=["embeddings"] + [f"block {i + 1}" for i in range(model.config.n_layer)],
                top=[[tokenizer.label(i) for i in row] for row in top_id.tolist()],
                top_prob=top_prob.tolist(),
                next_prob=[row + [None] for row in nxt.tolist()],
                dropped=dropped)


# -- induction heads ------------------------------------------------------------------------
def probe_tokens(tokenizer: Tokenizer) -> list[int]:
    """The ids a probe draws from: every token but the end of text, padding (no bytes) and line
    breaks (the probe is one passage; a line break starts another in most corpora)."""
    ids = [i for i in range(tokenizer.vocab_size)
           if i != tokenizer.end_of_text and tokenizer.token_bytes(i) and b"\n" not in tokenizer.token_bytes(i)]
    return ids if len(ids) >= 2 else list(range(tokenizer.vocab_size))


def induction_probe(tokens: Sequence[int], length: int, batch: int = PROBE_BATCH, seed: int = 0) -> torch.Tensor:
    """(batch, 2 * length): random sequences of the given tokens, each repeated once. Drawn
    without repetition when there are enough tokens, so each token's earlier occurrence is one."""
    gen = torch.Generator().manual_seed(seed)
    pool = torch.tensor(list(tokens))
    if length <= len(pool):
        rows = torch.stack([pool[torch.randperm(len(pool), generator=gen)[:length]] for _ in range(batch)])
    else:
        rows = pool[torch.randint(len(pool), (batch, length), generator=gen)]
    return torch.cat([rows, rows], dim=1)


def induction_scores(maps: torch.Tensor, length: int) -> torch.Tensor:
    """(n_layer, n_head) from attention maps (n_layer, B, nh, 2L, 2L) of a probe repeated at
    `length`: the mean attention a position t of the second half pays to t - length + 1, the
    token after its own token's earlier occurrence (1 for a perfect induction head)."""
    t = torch.arange(length, 2 * length)
    return maps[..., t, t - length + 1].mean(dim=(1, 3))


@dataclass(frozen=True)
class Induction:
    scores: list[list[float]]    # [layer][head]
    loss_first_half: float       # on the probe's first half: random, unpredictable tokens
    loss_second_half: float      # on its second half but the first token: copying can predict them
    probe_length: int            # tokens in each half

    def best(self) -> tuple[int, int, float]:
        """(layer, head, score) of the strongest induction head, counting from 0."""
        return max(((layer, head, s) for layer, row in enumerate(self.scores) for head, s in enumerate(row)),
                   key=lambda found: found[2])

    def to_dict(self) -> dict:
        return {"heads": [{"layer": layer, "head": head, "score": s}
                          for layer, row in enumerate(self.scores) for head, s in enumerate(row)],
                "loss_first_half": self.loss_first_half, "loss_second_half": self.loss_second_half,
                "probe_length": self.probe_length}


def induction(model: GPT, tokenizer: Tokenizer, length: Optional[int] = None, batch: int = PROBE_BATCH,
              seed: int = 0) -> Induction:
    """Each head's induction score and the loss on each half of a fixed random probe. The
    halves have length - 1 targets each: tokens 1.. of the first, and the second's after its
    first (which follows the first half's end and cannot be known)."""
    tokens = probe_tokens(tokenizer)
    most = model.config.block_size // 2
    length = min(length or min(PROBE_LENGTH, len(tokens)), most)
    if length < 2:
        raise PromptError(f"the block ({model.config.block_size}) is too short for an induction probe")
    idx = induction_probe(tokens, length, batch, seed).to(device_of(model))
    with evaluating(model):
        maps = model.attention_maps(idx).float().cpu()
        logits, _ = model(idx)
    losses = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), idx[:, 1:], reduction="none").cpu()
    return Induction(scores=induction_scores(maps, length).tolist(),
                     loss_first_half=float(losses[:, : length - 1].mean()),
                     loss_second_half=float(losses[:, length:].mean()),
                     probe_length=length)


# -- the embedding map ----------------------------------------------------------------------
@dataclass(frozen=True)
class Projection:
    points: list[list[float]]    # (n, 2): each row's place on the two axes
    axes: list[list[float]]      # (2, C): the two principal directions
    explained: list[float]       # the share of the rows' variance each axis holds


def pca_2d(matrix: torch.Tensor, previous: Optional[Projection] = None) -> Projection:
    """The rows of matrix (n, C) on their two principal axes. An axis's sign is arbitrary, so it
    is chosen to agree with the previous frame's axis (a map that does not flip while it
    animates), or, with none, so that the axis's largest loading is positive."""
    x = matrix.detach().double()
    x = x - x.mean(dim=0)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    axes = vh[:2].clone()
    if axes.size(0) < 2:  # a single column: the second axis is nothing
        axes = torch.cat([axes, torch.zeros_like(axes)])
    old = torch.tensor(previous.axes, dtype=torch.float64) if previous is not None else None
    for i in range(2):
        if old is not None and old.shape == axes.shape:
            agree = float(axes[i] @ old[i])
        else:
            agree = float(axes[i][axes[i].abs().argmax()])
        if agree < 0:
            axes[i] = -axes[i]
    variance = s.square()
    share = (variance / variance.sum().clamp_min(1e-30)).tolist() + [0.0, 0.0]
    return Projection(points=(x @ axes.T).tolist(), axes=axes.tolist(), explained=share[:2])


def token_kind(label: str) -> str:
    """What colours a token on the map: 'vowel', 'letter', 'digit', 'space', 'punctuation' or
    'other', by its first character that is not a space (a BPE ' the' is a letter)."""
    text = label.strip()
    if not text:
        return "space"
    c = unicodedata.normalize("NFD", text[0])[0]   # é -> e
    if c.lower() in "aeiou":
        return "vowel"
    if c.isalpha():
        return "letter"
    if c.isdigit():
        return "digit"
    return "punctuation" if unicodedata.category(c)[0] in "PS" else "other"


@dataclass(frozen=True)
class EmbeddingMap:
    labels: list[str]                 # each token, as a person reads it
    kinds: list[str]                  # token_kind of each
    tokens: Projection                # the token embeddings
    positions: Optional[Projection]   # the learned position embeddings, in order (None: rotary)
    no_positions: str = ""            # why there are none, in words

    def to_dict(self) -> dict:
        return asdict(self)


def embedding_map(model: GPT, tokenizer: Tokenizer, previous: Optional[EmbeddingMap] = None) -> EmbeddingMap:
    """Token (and learned position) embeddings in 2-D, signs following `previous` when given."""
    labels = [tokenizer.label(i) for i in range(model.config.vocab_size)]
    tokens = pca_2d(model.wte.weight.cpu(), previous.tokens if previous else None)
    if model.wpe is None:
        return EmbeddingMap(labels, [token_kind(t) for t in labels], tokens, None, NO_POSITION_TABLE)
    positions = pca_2d(model.wpe.weight.cpu(), previous.positions if previous else None)
    return EmbeddingMap(labels, [token_kind(t) for t in labels], tokens, positions)


# -- where a text surprises it --------------------------------------------------------------
@dataclass(frozen=True)
class Surprise:
    tokens: list[str]                          # the text's tokens, as a person reads them
    losses: list[Optional[float]]              # -ln p(token) in nats (None: the first, unpredicted)
    candidates: list[list[tuple[str, float]]]  # the likeliest tokens there, with their probability

    @property
    def mean_loss(self) -> float:
        known = self.losses[1:]
        return sum(known) / max(len(known), 1)

    def worst(self, n: int = 10) -> list[int]:
        """The positions of the n most surprising tokens, most surprising first."""
        return sorted(range(1, len(self.losses)), key=lambda i: -self.losses[i])[:n]

    def to_dict(self) -> dict:
        return {**asdict(self), "mean_loss": self.mean_loss, "worst": self.worst()}


def surprise(model: GPT, tokenizer: Tokenizer, text: str, top_k: int = TOP_K, batch_size: int = 64) -> Surprise:
    """Each token's loss with the top candidates there. A text longer than the block is read in
    windows of the block as evaluation reads it (the tail in one more window, only its new
    targets kept), so the mean is the evaluate command's loss."""
    ids = torch.tensor(prompt_ids(tokenizer, text, least=2)[0])
    n = len(ids) - 1                       # targets: ids[1:]
    T = min(model.config.block_size, n)
    starts = list(range(0, n - T + 1, T))
    tail = n - (starts[-1] + T)            # targets the whole windows missed
    if tail:
        starts.append(n - T)
    k = min(top_k, model.config.vocab_size)
    losses, top_p, top_i = torch.zeros(n), torch.zeros(n, k), torch.zeros(n, k, dtype=torch.long)
    with evaluating(model):
        for i in range(0, len(starts), batch_size):
            chunk = torch.tensor(starts[i:i + batch_size])
            where = chunk[:, None] + torch.arange(T)                # (b, T): target index - 1
            logp = model(ids[where].to(device_of(model)))[0].float().cpu().log_softmax(-1)  # (b, T, V)
            fresh = torch.ones_like(where, dtype=torch.bool)
            if tail and i + batch_size >= len(starts):              # the tail: its new targets only
                fresh[-1, : T - tail] = False
            p, j = logp.exp().topk(k, dim=-1)
            losses[where[fresh]] = -logp.gather(-1, ids[where + 1][..., None])[..., 0][fresh]
            top_p[where[fresh]], top_i[where[fresh]] = p[fresh], j[fresh]
    candidates = [[]] + [[(tokenizer.label(j), p) for j, p in zip(js, ps)]
                         for js, ps in zip(top_i.tolist(), top_p.tolist())]
    return Surprise([tokenizer.label(i) for i in ids.tolist()], [None] + losses.tolist(), candidates)
