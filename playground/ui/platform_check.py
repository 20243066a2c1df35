"""Before Qt starts: can the window open on this machine? Qt's answer, when its X11 plugin misses
a system library or there is no display, is a fatal message about "platform plugins" and an
abort (exit 134). This check says what is missing in words, with the command that installs it,
and the app exits 1 instead. Plain Python: it runs before PySide6 creates anything."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

# Qt 6.5+ opens this at run time, so the plugin itself loads without it (and then aborts)
RUNTIME_LIBRARIES = ["libxcb-cursor.so.0"]
MISSING = re.compile(r"(lib[\w.+-]+\.so[\w.]*)\s*(?:=> not found|: cannot open shared object file)")


def debian_package(soname: str) -> str:
    """Debian's package for a shared library: libxcb-icccm.so.4 is in libxcb-icccm4, and a
    name that ends in a digit takes a dash (libxkbcommon-x11.so.0 is in libxkbcommon-x11-0)."""
    stem, _, version = soname.partition(".so")
    version = version.lstrip(".").split(".")[0]
    if not version:
        return stem
    return f"{stem}-{version}".lower() if stem[-1].isdigit() else f"{stem}{version}".lower()


def _xcb_plugin() -> Optional[Path]:
    try:
        import PySide6
    except ImportError:
        return None
    plugin = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return plugin if plugin.exists() else None


def _loads(name: str) -> Optional[str]:
    """None when the library loads, else the loader's message."""
    try:
        ctypes.CDLL(name)
    except OSError as exc:
        return str(exc)
    return None


def _ldd_missing(path: Path) -> list[str]:
    if shutil.which("ldd") is None:
        return []
    try:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return MISSING.findall(out)


def missing_libraries(plugin: Optional[Path], load: Callable[[str], Optional[str]] = _loads,
                      ldd: Callable[[Path], list[str]] = _ldd_missing) -> list[str]:
    """The shared libraries Qt's X11 plugin needs and cannot find, in order, without repeats."""
    if plugin is None:
        return []
    missing: list[str] = []
    error = load(str(plugin))
    if error is not None:
        missing += ldd(plugin) + MISSING.findall(error)
    missing += [name for name in RUNTIME_LIBRARIES if load(name) is not None]
    return list(dict.fromkeys(missing))


def window_problem(environ=os.environ, platform: str = sys.platform,
                   plugin: Optional[Path] = None, **probes) -> str:
    """Why the window cannot open here, in words with what to do; '' when it can (or when this
    machine is not one we can tell about: Windows and macOS ship what Qt needs)."""
    if not platform.startswith("linux"):
        return ""
    chosen = environ.get("QT_QPA_PLATFORM", "")
    if chosen and not chosen.startswith("xcb"):
        return ""  # offscreen, wayland, vnc…: Qt's own choice, nothing of X11 is needed
    if not chosen and environ.get("WAYLAND_DISPLAY"):
        return ""
    headless = ("To use it without a window: `python -m playground --help` (train, generate, serve "
                "and export from the command line), or QT_QPA_PLATFORM=offscreen.")
    if not environ.get("DISPLAY"):
        return ("GPT Playground cannot open its window: there is no display (DISPLAY is not set). "
                "Run it on a desktop, or over ssh with X forwarding (ssh -X). " + headless)
    names = missing_libraries(plugin if plugin is not None else _xcb_plugin(), **probes)
    if not names:
        return ""
    packages = " ".join(debian_package(n) for n in names)
    return (f"GPT Playground cannot open its window: the X11 libraries Qt needs are missing "
            f"({', '.join(names)}). On Debian or Ubuntu: sudo apt-get install {packages} "
            f"(on Fedora: sudo dnf install xcb-util-cursor xcb-util-wm xcb-util-keysyms). " + headless)


__all__ = ["window_problem", "missing_libraries", "debian_package"]
