"""The Qt layer: main window, parameter panels, canvases, gallery and the worker bridge."""
