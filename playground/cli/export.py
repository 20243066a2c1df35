"""`gpt-playground export CKPT --format hf --out DIR`, `--format onnx --out FILE.onnx` or `--format gguf
--out FILE.gguf`: write, verify, and say how to open what was written. The report goes to stdout, stages and warnings to stderr."""

from __future__ import annotations

import sys

from playground.export.report import FORMATS, TOLERANCE, load_snippet


def add_arguments(e) -> None:
    e.add_argument("checkpoint", metavar="CKPT")
    e.add_argument("--format", required=True, choices=sorted(FORMATS),
                   help="; ".join(f"{k}: {v}" for k, v in FORMATS.items()))
    e.add_argument("--out", required=True, metavar="DIR|FILE.onnx|FILE.gguf",
                   help="hf: the folder to write; onnx: the .onnx file (its tokenizer goes beside it "
                        "as FILE.tokenizer.json); gguf: the .gguf file")
    e.add_argument("--force", action="store_true", help="replace --out if it exists (a file, or a folder that is not empty)")
    e.add_argument("--quiet", action="store_true", help="no stage lines on stderr")


def run(args) -> int:
    from playground.export.exporter import export_model

    def stage(fraction: float, words: str) -> None:
        if not args.quiet:
            print(f"[{fraction:4.0%}] {words}", file=sys.stderr, flush=True)

    report = export_model(args.checkpoint, args.format, args.out, progress=stage, force=args.force)
    print(f"wrote {report.out} ({report.seconds:.1f} s): {', '.join(report.files)}")
    print(f"architecture: {report.architecture}")
    for note in report.notes:
        print(f"  {note}")
    if report.verified:
        within = "exact" if report.tolerance == TOLERANCE else f"within {report.tolerance:g}"
        print(f"verified{' with ' + report.checked_by if report.checked_by else ''}: max |Δ log-probability| "
              f"{report.max_logprob_error:.2g} on random ids and the model's own text "
              f"({within if report.exact else 'NOT ' + within}); greedy decoding "
              f"{'matches' if report.greedy_match else 'differs'}: {report.greedy_text!r}")
    else:
        print("NOT verified (see the warning below)")
    print("open it in Python:")
    for line in load_snippet(report):
        print(f"    {line}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
