"""Numbers in words for people, the same everywhere (the command line and the window):
'1 run' and '2 runs', '1.6 min', '111.2 MB'."""

from __future__ import annotations

from typing import Optional


def plural(count: int, noun: str, many: Optional[str] = None) -> str:
    """'1 run', '2 runs', '1,024 characters'."""
    return f"{count:,} {noun if count == 1 else (many or noun + 's')}"


def size(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:,.0f} {unit}" if unit == "bytes" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1024
    return ""


def duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
