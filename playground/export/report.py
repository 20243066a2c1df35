"""What an export says about itself: ExportReport (plain fields, for the CLI and the window),
ExportError, and the lines of Python that open what was written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from playground.engine.errors import PlaygroundError

# the largest |difference of log-probabilities| that still counts as the same model: float32
# arithmetic in another order lands near 1e-6
TOLERANCE = 1e-4
INSTALL = "pip install 'gpt-playground-studio[export]'"
FORMATS = {"hf": "a Hugging Face transformers folder", "onnx": "an ONNX file (FILE.onnx) with its tokenizer beside it",
           "gguf": "a GGUF file (FILE.gguf) for llama.cpp and Ollama, its tokenizer inside"}


class ExportError(PlaygroundError):
    """A model cannot be exported as asked: unknown format, a folder in the way, a setting that
    the target architecture cannot express, a missing package, or a failed verification."""


@dataclass
class ExportReport:
    format: str                 # "hf", "onnx" or "gguf"
    out: str                    # the folder (hf) or the .onnx or .gguf file written
    architecture: str           # "GPT2LMHeadModel", "Starcoder2ForCausalLM", "ONNX" or "llama.cpp gpt2"
    max_logprob_error: float    # largest |log-softmax difference| against our model, random ids
    exact: bool                 # max_logprob_error < TOLERANCE
    greedy_match: bool          # greedy decoding picked the same tokens as ours
    verified: bool = True       # False: written, but the verifying library was not installed
    greedy_text: str = ""       # the exported model's greedy continuation, decoded by its tokenizer
    files: list[str] = field(default_factory=list)     # names inside `out`
    notes: list[str] = field(default_factory=list)     # how the mapping was done
    warnings: list[str] = field(default_factory=list)  # what a user should know (inexact fold)
    seconds: float = 0.0
    checked_by: str = ""        # what reloaded it ("llama.cpp 0.3.36", "gguf's reader"); "" for the verifier
    tolerance: float = TOLERANCE  # exact = max_logprob_error below this


def load_snippet(report: ExportReport) -> list[str]:
    """Three lines of Python that open the export."""
    out = report.out
    if report.format == "gguf":
        return ["from llama_cpp import Llama   # pip install llama-cpp-python",
                f"llm = Llama({out!r}, n_ctx=0)",
                "print(llm('to be', max_tokens=20, temperature=0)['choices'][0]['text'])"]
    if report.format == "onnx":
        tokenizer = Path(out).with_name(Path(out).stem + ".tokenizer.json")
        return ["import onnxruntime, tokenizers",
                f"session = onnxruntime.InferenceSession({out!r})",
                f"tokenizer = tokenizers.Tokenizer.from_file({str(tokenizer)!r})"]
    return ["from transformers import AutoModelForCausalLM, AutoTokenizer",
            f"model = AutoModelForCausalLM.from_pretrained({out!r})",
            f"tokenizer = AutoTokenizer.from_pretrained({out!r})"]
