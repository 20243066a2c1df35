"""GPT Playground: train a small GPT from scratch on your CPU (characters or subwords) and watch it
learn; then generate, evaluate, fine-tune, serve and export it (transformers, ONNX, GGUF)."""

__version__ = "0.1.0"
