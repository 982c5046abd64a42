"""Canvases that show a result: images, text and piano rolls."""
