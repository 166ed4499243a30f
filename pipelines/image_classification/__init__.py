"""Image classification: a small modern CNN on Fashion-MNIST (default), Keras/TFDS datasets or class folders."""
