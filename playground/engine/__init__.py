"""The engine: the GPT, its training and decoding, corpora and model files. No Qt, ever."""
