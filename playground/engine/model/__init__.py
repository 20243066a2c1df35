"""The model and what runs it: the GPT (gpt.py, the one statement of the architecture), its
files, the decoding caches and the one generation engine, the optimizers and the fast paths
with what each was verified for."""
