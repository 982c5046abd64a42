"""Small painted icons: one per plugin kind, so the list reads at a glance without image files."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap

KIND_STYLE = {
    "image": ("#3b82f6", "▦"),
    "text": ("#10b981", "¶"),
    "midi": ("#f59e0b", "♪"),
}


def kind_icon(kind: str | None, size: int = 32) -> QIcon:
    colour, glyph = KIND_STYLE.get(kind or "", ("#9ca3af", "!"))
    pm = QPixmap(size, size)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor(colour))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawRoundedRect(QRectF(1, 1, size - 2, size - 2), size / 5, size / 5)
    font = QFont()
    font.setPixelSize(int(size * 0.6))
    font.setBold(True)
    p.setFont(font)
    p.setPen(QColor("white"))
    p.drawText(QRectF(0, 0, size, size), Qt.AlignmentFlag.AlignCenter, glyph)
    p.end()
    return QIcon(pm)
