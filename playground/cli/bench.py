"""`python -m playground bench`: every performance target measured side by side, PASS/FAIL."""

from __future__ import annotations


def add_arguments(b) -> None:
    b.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    b.add_argument("--only", metavar="NAMES", help="comma-separated subset of targets")
    b.add_argument("--quick", action="store_true", help="shorter runs (for a smoke check)")


def run(args) -> int:
    from playground.bench.runner import run_bench
    return run_bench(args)
