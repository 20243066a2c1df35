"""Stop strings that never leak: text that could still turn out to be the start of a stop
string is held back until the next tokens decide, so a client never sees a stop string, whole
or in part, even when it arrives split across streamed chunks. What the engine knows of each
token (its log-probabilities) travels with the token's characters and leaves when they do."""

from __future__ import annotations

from collections import deque


class StopFilter:
    def __init__(self, stops: tuple[str, ...] = ()):
        self.stops = tuple(s for s in stops if s)
        self.held = ""
        self.pending: deque = deque()  # [info, characters of it still held] per held token

    def feed(self, text: str, info=None) -> tuple[str, bool, tuple]:
        """Take the next token's text; returns (text safe to send, whether a stop string
        ended the output, the infos of the tokens sent)."""
        self.held += text
        if info is not None:
            self.pending.append([info, len(text)])
        hits = [(self.held.find(s), s) for s in self.stops if s in self.held]
        if hits:
            at = min(i for i, _ in hits)
            out = self.held[:at]
            infos = self._release(at, touched=True)
            self.held, self.pending = "", deque()
            return out, True, infos
        keep = max((k for s in self.stops for k in range(1, min(len(s), len(self.held) + 1))
                    if self.held.endswith(s[:k])), default=0)
        cut = len(self.held) - keep
        out, self.held = self.held[:cut], self.held[cut:]
        return out, False, self._release(cut)

    def flush(self) -> tuple[str, tuple]:
        """The output ended without a stop string: what was held back goes out."""
        out = self.held
        infos = self._release(len(out), touched=True)
        self.held = ""
        return out, infos

    def _release(self, n: int, touched: bool = False) -> tuple:
        """Infos of the tokens whose characters are all among the next n sent (with touched:
        also a token only partly sent, before a stop string or at the end)."""
        out = []
        while self.pending and self.pending[0][1] <= n:
            info, chars = self.pending.popleft()
            n -= chars
            out.append(info)
        if self.pending and n > 0:
            if touched:
                out.append(self.pending.popleft()[0])
            else:
                self.pending[0][1] -= n
        return tuple(out)
