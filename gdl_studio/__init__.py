"""GDL Studio: a desktop studio for generative models run through ONNX Runtime."""

__version__ = "0.1.0"
