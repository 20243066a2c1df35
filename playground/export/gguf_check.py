"""Hold a written GGUF file to our model. Always: gguf's reader (the metadata, every tensor bit
for bit, the tokenizer rebuilt from the file's tokens and merges, and the function the tensors
hold, rebuilt in torch). When llama-cpp-python is installed, also llama.cpp itself: the same
token ids, log-probabilities within LLAMA_TOLERANCE, the same greedy tokens.

Both stay within the block: past it llama.cpp cannot slide the window as our model does
(gguf_file's docstring)."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from playground.export import gguf_file, hf, verify
from playground.export.report import TOLERANCE, ExportError, ExportReport

# ggml evaluates the GELU from a half-precision table, so even a tanh-GELU model moves by 2e-3 to
# 6e-3 in log-probability there (the export tests' models; a trained 2 x 128 BPE model); more layers
# may move more, which is reported, not refused. A wrong tensor or layout moves by 0.5 and more.
LLAMA_TOLERANCE = 1e-2
LLAMA_WRONG = 0.1   # beyond this, for a file that reads back exactly, llama.cpp computes another function
LLAMA_INSTALL = "pip install 'gpt-playground-studio[llama]'"


def check(ckpt, path: Path, plan: gguf_file.Plan, in_llama: bool,
          say: Callable[[float, str], None]) -> ExportReport:
    """The export's report, or ExportError where the file is not what was meant."""
    model, tokenizer, start = ckpt.model, ckpt.tokenizer, ckpt.state.get("start_char")
    V, block = model.config.vocab_size, model.config.block_size
    say(0.5, "verifying: reading back with gguf's reader")
    tok = gguf_file.tokenizer_of(path)
    verify.check_tokenizer(tokenizer, lambda s: tok.encode(s, add_special_tokens=False).ids, tok.decode)
    rebuilt = gguf_file.read_back(path, plan)
    own = verify.own_text(model, tokenizer, start)
    read_error = verify.max_logprob_error(model, lambda ids: rebuilt(ids)[0][..., :V], own=own, within_block=True)
    # what the file holds is our model's function exactly, unless its GELU or head-bias fold differs
    exact_file = plan.exact_activation and plan.fold_residual <= hf.FOLD_EXACT
    if exact_file and read_error >= TOLERANCE:
        raise ExportError(f"verification failed: the GGUF file's tensors give log-probabilities that differ "
                          f"from the model's by up to {read_error:.3g} (more than {TOLERANCE:g})")
    prompt, n = verify.greedy_plan(model, tokenizer, start)
    n = max(0, min(n, block - len(prompt)))
    warnings = list(plan.warnings)
    if in_llama:
        say(0.7, "verifying: llama.cpp")
        error, theirs, text, found = in_llama_cpp(model, tokenizer, path, plan, own, prompt, n)
        warnings += found
        checked_by = f"llama.cpp (llama-cpp-python {_version('llama_cpp_python')})"
        tolerance = LLAMA_TOLERANCE
        if exact_file and error >= LLAMA_WRONG:
            raise ExportError(f"verification failed: llama.cpp's log-probabilities differ from the model's by "
                              f"up to {error:.3g} (more than {LLAMA_WRONG:g}), although the file reads back exactly")
        if exact_file and error >= LLAMA_TOLERANCE:
            warnings.append(f"llama.cpp's log-probabilities differ from the model's by up to {error:.2g}, more than "
                            f"{LLAMA_TOLERANCE:g}, although the file holds the model exactly (read back within "
                            f"{TOLERANCE:g}): ggml's half-precision GELU table, whose error grows with depth")
    else:
        theirs = verify.greedy_logits(lambda ids: rebuilt(ids)[0][..., :V], prompt, n, block)
        error, text, tolerance = read_error, tok.decode(theirs), TOLERANCE
        checked_by = "gguf's reader (the file's tensors rebuilt in torch)"
        warnings.append(f"checked with gguf's reader, not in llama.cpp: llama-cpp-python is not installed "
                        f"({LLAMA_INSTALL}; it compiles llama.cpp, minutes)")
    ours = verify.greedy_ours(model, tokenizer, prompt, n)
    notes = list(plan.notes)
    match = ours == theirs and verify.same_text(tokenizer.decode(ours), text)
    tie = None if match else near_tie(model, prompt, ours, theirs, tolerance)
    if tie is not None:
        match = True
        notes.append(f"greedy decoding agrees up to token {tie[0] + 1}, where the model's top two tokens are "
                     f"{tie[1]:.1g} apart in log-probability: a tie at this tolerance")
    if plan.fold_residual > hf.FOLD_EXACT:
        warnings.append(f"the export is approximate: the head's bias over {V} tokens cannot be folded exactly "
                        f"into width {model.config.n_embd}; train with --no-head-bias for an exact export")
    if not match:
        warnings.append("greedy decoding picked different tokens from the model's")
    return ExportReport(format="gguf", out="", architecture=f"llama.cpp {plan.arch}", max_logprob_error=error,
                        exact=error < tolerance, greedy_match=match, greedy_text=text, notes=notes,
                        warnings=warnings, checked_by=checked_by, tolerance=tolerance)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:   # importable without its metadata (a --target copy)
        return "version unknown"


@torch.no_grad()
def near_tie(model, prompt: list[int], ours: list[int], theirs: list[int], tolerance: float):
    """(index, gap) where the two greedy runs first part, if our log-probabilities of the two
    picks there are within 2 x tolerance (each side may be off by the tolerance); else None."""
    i = next((k for k, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
    if i is None:
        return None
    context = (prompt + ours[:i])[-model.config.block_size:]
    logprobs = model(torch.tensor([context]))[0][0, -1].double().log_softmax(-1)
    gap = float(logprobs[ours[i]] - logprobs[theirs[i]])
    return (i, gap) if gap < 2 * tolerance else None


def in_llama_cpp(model, tokenizer, path: Path, plan: gguf_file.Plan, own: torch.Tensor, prompt: list[int],
                 n: int) -> tuple[float, list[int], str, list[str]]:
    """(max |Δ log-probability|, greedy ids, their text, warnings) from llama.cpp itself."""
    from llama_cpp import Llama
    V = model.config.vocab_size
    llm = Llama(str(path), n_ctx=0, logits_all=True, verbose=False, n_threads=min(2, os.cpu_count() or 1))
    try:
        warnings = []
        if llm.n_ctx() > plan.context:
            warnings.append(f"this llama.cpp made its context {llm.n_ctx()} tokens, more than the file's "
                            f"{plan.context}" + (": it aborts past the position table" if plan.arch == "gpt2" else ""))
        verify.check_tokenizer(tokenizer, lambda s: llm.tokenize(s.encode("utf-8"), add_bos=False, special=False),
                               lambda ids: llm.detokenize(ids).decode("utf-8", errors="replace"))

        def logits(ids: torch.Tensor) -> torch.Tensor:
            rows = []
            for row in ids.tolist():
                llm.reset()
                llm.eval(row)
                rows.append(np.array(llm.scores[: len(row), :V]))
            return torch.from_numpy(np.stack(rows))
        error = verify.max_logprob_error(model, logits, own=own, within_block=True)
        llm.reset()
        theirs = []
        if n:
            llm.eval(prompt)
            for _ in range(n):
                theirs.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
                llm.eval(theirs[-1:])
        return error, theirs, llm.detokenize(theirs).decode("utf-8", errors="replace"), warnings
    finally:
        llm.close()
