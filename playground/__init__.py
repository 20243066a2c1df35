"""GPT Playground: train a character-level GPT from scratch on your CPU and watch it learn."""

__version__ = "0.1.0"
