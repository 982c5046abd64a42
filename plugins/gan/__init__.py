"""The image GAN plugin: generators trained by plugins/gan/train, run through ONNX Runtime."""
