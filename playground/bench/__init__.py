"""Benchmarks behind `python -m playground bench` (run.py), the GUI bench (gui.py, run in its
own processes), generation speed (generation.py) and the plain textbook GPT they compare with
(reference.py)."""
