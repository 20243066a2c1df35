"""Export: a model leaves the app as a Hugging Face transformers folder or an ONNX file.

`export_model(ckpt_path, fmt, out, progress=None, force=False) -> ExportReport`; transformers,
onnx and onnxruntime are imported only when an export runs (the optional `export` extra).
"""

from playground.export.report import FORMATS, ExportError, ExportReport, load_snippet


def __getattr__(name: str):
    """export_model on first use: the CLI's parser imports this package without torch."""
    if name == "export_model":
        from playground.export.exporter import export_model
        return export_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FORMATS", "ExportError", "ExportReport", "export_model", "load_snippet"]
