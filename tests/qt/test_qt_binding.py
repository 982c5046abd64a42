"""Guards against a known-bad Qt binding: PySide6 6.12.0 under Python 3.11 decrements None's
reference count on every void method call, and the interpreter aborts after a few thousand."""

from __future__ import annotations

import subprocess
import sys


def test_many_void_qt_calls_do_not_corrupt_none() -> None:
    code = (
        "import sys\n"
        "from PySide6.QtCore import QObject\n"
        "before = sys.getrefcount(None)\n"
        "o = QObject()\n"
        "for i in range(20000):\n"
        "    o.setObjectName('x')\n"
        "print(sys.getrefcount(None) - before)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert abs(int(proc.stdout.strip())) < 1000
