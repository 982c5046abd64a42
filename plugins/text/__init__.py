"""The text plugin: character-level LSTMs trained by plugins/text/train, run one character per
call through ONNX Runtime."""
