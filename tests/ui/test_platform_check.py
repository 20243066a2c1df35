"""Before Qt starts: a machine that cannot show the window gets words and exit 1, not Qt's
abort about platform plugins (exit 134)."""

import os
import subprocess
import sys
from pathlib import Path

from playground.ui.platform_check import debian_package, missing_libraries, window_problem

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = Path("/fake/libqxcb.so")


def test_debian_package_names():
    assert debian_package("libxcb-icccm.so.4") == "libxcb-icccm4"
    assert debian_package("libxcb-cursor.so.0") == "libxcb-cursor0"
    assert debian_package("libxkbcommon-x11.so.0") == "libxkbcommon-x11-0"


def test_missing_libraries_come_from_the_loader_and_ldd_once_each():
    def load(name):
        return None if name == "libxcb-cursor.so.0" else "libxcb-icccm.so.4: cannot open shared object file"
    found = missing_libraries(PLUGIN, load=load, ldd=lambda p: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])
    assert found == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert missing_libraries(PLUGIN, load=lambda n: None, ldd=lambda p: ["x"]) == []  # it loads: nothing missing


def test_the_message_names_the_packages_and_the_way_without_a_window():
    probes = {"load": lambda name: f"{name}: cannot open shared object file", "ldd": lambda p: []}
    text = window_problem({"DISPLAY": ":0"}, "linux", PLUGIN, **probes)
    assert "sudo apt-get install" in text and "libxcb-cursor0" in text and "python -m playground" in text
    assert window_problem({}, "linux", PLUGIN, **probes).startswith(
        "GPT Playground cannot open its window: there is no display")
    assert window_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", PLUGIN, **probes) == ""
    assert window_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux", PLUGIN, **probes) == ""
    assert window_problem({}, "win32", PLUGIN, **probes) == ""
    assert window_problem({"DISPLAY": ":0"}, "linux", PLUGIN, load=lambda n: None, ldd=lambda p: []) == ""


def test_launching_without_a_display_says_so_and_exits_1():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    done = subprocess.run([sys.executable, str(ROOT / "main.py")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "there is no display" in done.stderr
    assert "qt.qpa.plugin" not in done.stderr
