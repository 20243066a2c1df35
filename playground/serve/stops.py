"""Stop strings that never leak: text that could still turn out to be the start of a stop
string is held back until the next characters decide, so a client never sees a stop string,
whole or in part, even when it arrives split across streamed chunks."""

from __future__ import annotations


class StopFilter:
    def __init__(self, stops: tuple[str, ...] = ()):
        self.stops = tuple(s for s in stops if s)
        self.held = ""
        self.infos: list = []  # what the engine knows of each held character (logprobs)

    def feed(self, text: str, info=None) -> tuple[str, bool, tuple]:
        """Take the next token's text; returns (text safe to send, whether a stop string
        ended the output, the infos of the characters sent)."""
        self.held += text
        self.infos += [info] * len(text) if info is not None else []
        hits = [(self.held.find(s), s) for s in self.stops if s in self.held]
        if hits:
            at = min(i for i, _ in hits)
            out, infos = self.held[:at], tuple(self.infos[:at])
            self.held, self.infos = "", []
            return out, True, infos
        keep = max((k for s in self.stops for k in range(1, min(len(s), len(self.held) + 1))
                    if self.held.endswith(s[:k])), default=0)
        cut = len(self.held) - keep
        out, infos = self.held[:cut], tuple(self.infos[:cut])
        self.held, self.infos = self.held[cut:], self.infos[cut:]
        return out, False, infos

    def flush(self) -> tuple[str, tuple]:
        """The output ended without a stop string: what was held back goes out."""
        out, infos = self.held, tuple(self.infos)
        self.held, self.infos = "", []
        return out, infos
