"""Runtime hook of the frozen app, in place of PyInstaller's pyi_rth_pyside6 (gdl_studio.spec).

It sets the same Qt plugin path, without importing PySide6: PyInstaller's hook imports QtCore
(~60 ms at every start, the CLI's included, which never loads Qt) only to check for the
embedded qt.conf that the PyPI PySide6 wheel always creates itself on import.
"""

import os
import sys

_qt = os.path.join(sys._MEIPASS, "PySide6") if sys.platform == "win32" else None  # type: ignore[attr-defined]
os.environ["QT_PLUGIN_PATH"] = os.path.join(
    _qt or os.path.join(sys._MEIPASS, "PySide6", "Qt"),  # type: ignore[attr-defined]
    "plugins",
)
