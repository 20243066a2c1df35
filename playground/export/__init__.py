"""Export: a model leaves the app as a Hugging Face transformers folder or an ONNX file."""
