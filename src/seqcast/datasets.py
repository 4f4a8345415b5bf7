"""Built-in data sets: `from seqcast.datasets import generate_time_series, airline_passengers`."""

from seqcast.data.datasets import airline_passengers, generate_time_series

__all__ = ["airline_passengers", "generate_time_series"]
