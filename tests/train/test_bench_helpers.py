"""The timing helpers the plugins' ``bench`` commands share (gdl_studio.training.bench)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gdl_studio.training.bench import in_own_process


def test_in_own_process_runs_apart_and_passes_results_and_errors_back() -> None:
    assert in_own_process(os.getpid) != os.getpid()
    assert in_own_process(sorted, [3, 1, 2]) == [1, 2, 3]
    with pytest.raises(ValueError, match="not a number"):
        in_own_process(int, "not a number")


def test_has_torch_says_so_without_importing_it() -> None:
    code = (
        "import sys; from gdl_studio.training.bench import has_torch; "
        "print(has_torch(), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]  # the [train] extra is installed here


def test_in_own_process_imports_a_folder_installed_plugins_function(tmp_path: Path) -> None:
    """A user plugin's modules live under a package the studio makes at run time; the child
    process must find them too (as `gdl-studio bench` does for such a plugin)."""
    from gdl_studio.core.discovery import PluginRecord, _ensure_package

    folder = tmp_path / "probe"
    (folder / "train").mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / "train" / "__init__.py").write_text("")
    (folder / "train" / "side.py").write_text(
        "import os\n\ndef where(x):\n    return os.getpid(), __name__, x * 2\n"
    )
    record = PluginRecord(folder=folder, source="user", package="gdl_user_plugins.probe_1")
    _ensure_package(record)
    side = importlib.import_module("gdl_user_plugins.probe_1.train.side")
    pid, name, doubled = in_own_process(side.where, 21)
    assert pid != os.getpid() and name == "gdl_user_plugins.probe_1.train.side" and doubled == 42
