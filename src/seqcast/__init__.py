"""seqcast: recurrent and convolutional sequence models with Keras semantics on PyTorch."""

__version__ = "0.1.0"
