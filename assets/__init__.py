"""Shipped models: assets/<plugin>/<model>/model.onnx with a card.json beside it."""
