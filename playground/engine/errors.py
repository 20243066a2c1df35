"""The engine's own error types: every expected failure is one of these, with a message in words."""


class PlaygroundError(Exception):
    """Base class: anything the engine raises on purpose for bad input."""


class ConfigError(PlaygroundError, ValueError):
    """A setting is out of range or two settings do not fit together."""


class CorpusError(PlaygroundError, ValueError):
    """A corpus cannot be used: empty, binary, not UTF-8, too short, unreadable."""


class CheckpointError(PlaygroundError):
    """A model file cannot be read or written."""


class PromptError(PlaygroundError, ValueError):
    """A prompt cannot be used (for example every character is unknown to the model)."""


class ModelError(PlaygroundError):
    """A model cannot do what was asked (for example its weights hold inf or NaN)."""
