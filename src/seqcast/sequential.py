"""`Sequential`: a stack of layers, each built up front from the shape of the one before.

    model = Sequential([LSTM(20, return_sequences=True), LSTM(20),
                        Dense(10)], input_shape=(None, 1))
    model.summary()          # layer, output shape and parameter count, as Keras prints it
    model.fit(X, y, epochs=20, validation_data=(X_val, y_val))

`fit` / `predict` / `evaluate` work on arrays the Keras way and delegate to
`seqcast.training`, so the layers themselves stay plain PyTorch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor, nn

from seqcast import training
from seqcast.errors import SeqcastError, format_shape
from seqcast.layers import recurrent
from seqcast.layers.base import Layer, Shape, deserialize, serialize


@dataclass(frozen=True)
class SummaryRow:
    name: str
    kind: str
    output_shape: Shape
    params: int


@dataclass(frozen=True)
class Summary:
    """What `Sequential.summary()` reports; `str()` gives the table."""

    rows: tuple[SummaryRow, ...]
    total_params: int
    trainable_params: int

    def __str__(self) -> str:
        header = ("Layer (type)", "Output Shape", "Param #")
        body = [
            (f"{r.name} ({r.kind})", format_shape(r.output_shape), f"{r.params:,}")
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(3)]
        rule = "-" * (sum(widths) + 6)

        def line(cells: tuple[str, str, str]) -> str:
            return "  ".join(
                cell.rjust(w) if i == 2 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
            )

        lines = [rule, line(header), rule, *(line(row) for row in body), rule]
        lines.append(f"Total params: {self.total_params:,}")
        lines.append(f"Trainable params: {self.trainable_params:,}")
        lines.append(f"Non-trainable params: {self.total_params - self.trainable_params:,}")
        return "\n".join(lines)


def _snake(name: str) -> str:
    name = name.replace("RNN", "Rnn").replace("LSTM", "Lstm").replace("GRU", "Gru")
    name = name.replace("Conv1D", "Conv1d").replace("WaveNet", "Wavenet")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Sequential(Layer):
    """Layers applied one after another, (batch, time, features) in.

    `input_shape` leaves out the batch axis, as in Keras: `(None, 1)` is any number of steps of
    one feature. Given it, every layer is built when added, so parameter counts and output
    shapes are known at once and no lazy parameter remains.
    """

    def __init__(
        self, layers: Iterable[Layer] = (), input_shape: Iterable[int | None] | None = None
    ):
        super().__init__()
        self.layers = nn.ModuleList()
        self.names: list[str] = []
        self._declared_input = None if input_shape is None else tuple(input_shape)
        self._shape: Shape | None = None
        if self._declared_input is not None:
            self._shape = (None, *self._declared_input)
            self.input_shape = self._shape
        for layer in layers:
            self.add(layer)
        if self._shape is not None:
            self.built = True

    def add(self, layer: Layer) -> Sequential:
        if not isinstance(layer, Layer):
            raise SeqcastError(
                f"Sequential takes seqcast layers; got {type(layer).__name__} "
                "(wrap plain torch modules in a seqcast.layers.Layer subclass)"
            )
        if getattr(layer, "return_state", False):
            raise SeqcastError(
                f"{type(layer).__name__} with return_state=True returns several tensors and "
                "cannot sit inside a Sequential; use return_state=False there"
            )
        self.names.append(self._unique_name(layer))
        self.layers.append(layer)
        if self._shape is not None:
            self._shape = self._build_layer(layer, self._shape)
        return self

    def _unique_name(self, layer: Layer) -> str:
        base = _snake(type(layer).__name__)
        count = sum(1 for n in self.names if n == base or n.startswith(base + "_"))
        return base if count == 0 else f"{base}_{count}"

    @staticmethod
    def _build_layer(layer: Layer, shape: Shape) -> Shape:
        if not layer.built:
            layer.build(shape)
        return tuple(layer.compute_output_shape(shape))

    def build(self, input_shape: Shape) -> None:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = self._build_layer(layer, shape)
        self._shape = shape
        super().build(input_shape)

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    @property
    def output_shape(self) -> Shape | None:
        return self._shape

    def forward(self, x: Tensor) -> Tensor:
        layers, i = list(self.layers), 0
        while i < len(layers):
            # consecutive LSTM layers run as one call, their time steps overlapping on threads
            stacked = recurrent.lstm_stack_length(layers, i, x)
            if stacked:
                x = recurrent.run_lstm_stack(layers[i : i + stacked], x)
                i += stacked
            else:
                x = layers[i](x)
                i += 1
        return x

    # -- the Keras workflow on arrays ----------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any,
        settings: training.TrainSettings | None = None,
        *,
        validation_data: tuple[Any, Any] | None = None,
        metrics: Sequence[str | Callable] | None = None,
        callbacks: Sequence[Any] | None = None,
        on_epoch_end: training.EpochHook | None = None,
        **overrides: Any,
    ) -> training.History:
        """Train on arrays as Keras' `model.fit` does; returns a `History` of per-epoch losses
        and metrics (`history.history["val_loss"]`).

            model.fit(X, y, epochs=20, validation_data=(X_val, y_val), metrics=["mae"])
            model.fit(X, y, TrainSettings(epochs=20, schedule="onecycle"), lr=3e-2)

        The keywords besides these are training settings: the fields of
        `seqcast.training.TrainSettings` (epochs, batch_size, optimizer, lr, loss, clip_norm,
        early_stopping, schedule, seed, trainer, threads, ...; `verbose` is `progress`), over
        `settings` or the defaults (one epoch, as Keras). Metrics: "mse", "mae",
        "last_time_step_mse" or callables f(y_true, y_pred). `callbacks`: Lightning callbacks
        (they run the Lightning engine). `on_epoch_end(epoch, values)`: called after every
        epoch, epoch from 0, values that epoch's History entries."""
        self._check_built()
        settings = _fit_settings(settings, overrides)
        self._fit_loss = settings.loss
        self._fit_metrics = list(metrics or [])
        return training.fit_arrays(
            self, x, y, settings, validation_data, metrics,
            callbacks=callbacks, on_epoch_end=on_epoch_end,
        )  # fmt: skip

    def predict(self, x: Any, batch_size: int = 1024) -> np.ndarray:
        """Outputs for x as a numpy array (eval mode, no gradients)."""
        self._check_built()
        return training.predict_arrays(self, x, batch_size)

    def evaluate(
        self, x: Any, y: Any, metrics: Sequence[str | Callable] | None = None
    ) -> dict[str, float]:
        """{"loss": ..., metric: ...} on (x, y), with the loss and metrics given to `fit`."""
        self._check_built()
        chosen = metrics if metrics is not None else getattr(self, "_fit_metrics", [])
        return training.evaluate_arrays(self, x, y, getattr(self, "_fit_loss", "mse"), chosen)

    def _check_built(self) -> None:
        if self.input_shape is None:
            raise SeqcastError(
                "this Sequential has no input_shape yet; give input_shape=(time, features) "
                "when making it"
            )

    # -- introspection --------------------------------------------------------------------------
    def summary(self, print_fn: Callable[[str], Any] | None = print) -> Summary:
        """The layer table (name, output shape, parameter count); printed with `print_fn`."""
        if self.input_shape is None:
            raise SeqcastError(
                "Sequential.summary needs known shapes: give input_shape=(time, features) "
                "or call the model on an input first"
            )
        rows, shape = [], self.input_shape
        for name, layer in zip(self.names, self.layers, strict=True):
            shape = tuple(layer.compute_output_shape(shape))
            rows.append(SummaryRow(name, type(layer).__name__, shape, layer.count_params()))
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        result = Summary(tuple(rows), total, trainable)
        if print_fn is not None:
            print_fn(str(result))
        return result

    def get_config(self) -> dict[str, Any]:
        return {
            "layers": [serialize(layer) for layer in self.layers],
            "input_shape": None if self._declared_input is None else list(self._declared_input),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        layers = []
        for spec in config["layers"]:
            spec = {**spec, "input_shape": None}
            layers.append(deserialize(spec))
        return cls(layers, input_shape=config.get("input_shape"))


def _fit_settings(settings: Any, overrides: dict[str, Any]) -> training.TrainSettings:
    """`settings` (default: Keras' one epoch) with the keyword overrides, checked by name."""
    if settings is None:
        settings = training.TrainSettings(epochs=1)
    elif not isinstance(settings, training.TrainSettings):
        raise SeqcastError(
            f"fit's third argument is a TrainSettings, got {type(settings).__name__}; give "
            "settings as keywords, e.g. fit(X, y, epochs=20, batch_size=32)"
        )
    return settings.replace(**overrides)
