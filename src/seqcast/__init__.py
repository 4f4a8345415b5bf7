"""seqcast: recurrent and convolutional sequence models with Keras semantics on PyTorch,
and a forecasting workflow around them."""

__version__ = "0.1.0"

from seqcast import datasets  # noqa: E402
from seqcast.forecast import Forecaster  # noqa: E402
from seqcast.sequential import Sequential  # noqa: E402

load = Forecaster.load

__all__ = ["Forecaster", "Sequential", "datasets", "load", "__version__"]
