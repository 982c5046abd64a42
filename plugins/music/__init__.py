"""The music plugin: decoder-only transformers over MIDI tokens trained by plugins/music/train,
run through ONNX Runtime with a key/value cache (a prefill graph and a one-token step graph)."""
