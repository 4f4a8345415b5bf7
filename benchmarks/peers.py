"""seqcast against its peers on one task, side by side: PyTorch, Keras 3, Darts, NeuralForecast.

    python benchmarks/peers.py --out benchmarks/peers.json
    python benchmarks/peers.py --threads 0 --out benchmarks/peers_default_threads.json
    options: --models lstm,gru,ln_rnn,peephole_lstm  --epochs 5  --samples 10000  --threads 1
             --peers seqcast,torch,keras,darts,neuralforecast

Task (Hands-on ML ch.15's seq2seq forecaster): `generate_time_series(samples, 60, seed=42)`;
inputs `series[:, :50]`; targets the next 10 values at every step
(`Y[:, t, k] = series[:, t + 1 + k]`); the first 70% of the series train, the next 20% validate
(7000 / 2000 for 10000). Model: two recurrent layers of 20 units returning sequences, then
Dense(10) on every step; MSE loss, Adam at 1e-3, batch 32, reshuffled every epoch, `--epochs`
epochs, no validation during training, no early stopping, no learning-rate schedule. Cells:
`lstm`, `gru`, `ln_rnn` (layer-normalised SimpleRNN, h = tanh(LN(x W + h U + b)), eps 1e-3) and
`peephole_lstm`. Score: `val_last_step_mse`, the MSE over the validation series of the 10 values
forecast after the 50th input step against `series[:, 50:60]`.

Peers, each (model, peer) run in its own subprocess (this script with `--worker`) so TensorFlow
and torch never share a process, all with `--threads` threads (torch intra- and inter-op,
TensorFlow intra- and inter-op, OMP/MKL, seqcast's `fit(threads=)`; 0 leaves every framework at
its default, which is what a user gets: seqcast then runs the torch ops of models under a
million parameters on one thread, and its stacked LSTM layers as a wavefront on one core per
layer, which `note` reports):
  seqcast         the public API: `Sequential([...]).fit(...)`, `history.seconds_per_epoch`
  torch           a plain PyTorch loop: nn.LSTM / nn.GRU(num_layers=2) + nn.Linear on every step
  keras           Keras 3 on TensorFlow-CPU, `model.fit`, the defaults a user gets (jit_compile)
  darts           `BlockRNNModel`, 50 in / 10 out, one window per training series
  neuralforecast  `LSTM` / `GRU` (direct, recurrent=False), one window per training series
A peer that has no such layer is "skipped" with the reason; a peer whose package does not import
is "skipped" with the ImportError; a peer that raises is "failed" with the error's first line.

Equal work: every peer trains on the same series with the same batches of 32 windows of 50 steps
through 2 x 20 recurrent units, and times the training epochs only (no validation, no data
preparation). The losses are not all the same: seqcast, torch and keras fit the seq2seq targets
(10 values at each of 50 steps); Darts and NeuralForecast fit one 10-value forecast per window,
through a Linear(20, 1) applied to the RNN outputs at the last 10 input steps (forecast k reads
the state after input step 41 + k); their callbacks check that every epoch fed each training
series' one window once, in steps of at most 32. Each row's `note` says what differs.

`sec_per_epoch` is the median over epochs, leaving out the first when there are 3 or more
(warm-up, tracing, XLA compilation, and seqcast's C++ kernels, which torch builds on first use and
caches in TORCH_EXTENSIONS_DIR: a build inside a worker lands in its first epoch);
`timed_epochs` names those used. `ratio_vs_seqcast` is the peer's
sec/epoch over seqcast's for the same model: above 1, seqcast is faster.

JSON (`--out`): a list with one object per (model, peer); a short table is printed last.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

N_STEPS, AHEAD, UNITS, BATCH, LR = 50, 10, 20, 32, 1e-3
SEED = 0
MODELS = ["lstm", "gru", "ln_rnn", "peephole_lstm"]
PEERS = ["seqcast", "torch", "keras", "darts", "neuralforecast"]

#: (peer, model) pairs a peer cannot build: the reason, reported as status "skipped".
UNSUPPORTED = {
    ("torch", "ln_rnn"): "torch.nn has no layer-normalised RNN layer",
    ("torch", "peephole_lstm"): "torch.nn has no peephole LSTM layer",
    ("darts", "ln_rnn"): "Darts' BlockRNNModel has no layer-normalised RNN (RNN/LSTM/GRU only)",
    ("darts", "peephole_lstm"): "Darts' BlockRNNModel has no peephole LSTM (RNN/LSTM/GRU only)",
    ("neuralforecast", "ln_rnn"): "neuralforecast has no layer-normalised RNN model",
    ("neuralforecast", "peephole_lstm"): "neuralforecast has no peephole LSTM model",
}

#: what a reader must know about each peer's run beside the timing
NOTES = {
    "seqcast": "Sequential.fit (its lean single-device loop); seq2seq loss over all 50 steps "
    "x 10 values",
    "torch": "plain PyTorch loop; seq2seq loss over all 50 steps x 10 values; torch.nn's own "
    "initialisation (seqcast and Keras use glorot/orthogonal) and two bias vectors per layer "
    "(b_ih + b_hh), hence more parameters",
    "keras": "Keras model.fit on TensorFlow-CPU; seq2seq loss over all 50 steps x 10 values",
    "darts": "BlockRNNModel: not seq2seq at every step; trained on one 10-value forecast per "
    "window (loss over 10 values, not 500), its head a Linear(20, 1) applied to the RNN outputs "
    "at the last 10 input steps (forecast k reads the state after input step 41+k); same RNN "
    "work per epoch (N windows x 50 steps, 2 x 20 units); each batch is sliced from TimeSeries "
    "objects by its dataset",
    "neuralforecast": "direct (recurrent=False) model: not seq2seq at every step; trained on one "
    "10-value forecast per window (loss over 10 values, not 500); decoder_layers=1, i.e. its "
    "MLP decoder is one Linear(20, 1) applied to the RNN outputs at the last 10 input steps "
    "(forecast k reads the state after input step 41+k); loss MSE (its default is MAE); "
    "scaler_type identity (its default is robust); training_data_availability_threshold 1.0 "
    "(by default it pads 10 zeros after each series and also trains on the 9 windows whose "
    "horizon is partly padding, 10x the windows); windows_batch_size None = the one window of "
    "each of the 32 series in a batch (32 would resample a short last batch); max_steps = "
    "epochs x ceil(N/32); val_size 0 and limit_val_batches 0 (no validation), no early "
    "stopping, no lr decay",
}


# -- data (main process: numpy + seqcast's generator; workers read the .npz) ---------------------
def make_data(samples: int, path: Path) -> None:
    from seqcast.data.datasets import generate_time_series

    series = generate_time_series(samples, N_STEPS + AHEAD, seed=42)  # (samples, 60, 1) float32
    a, b = int(samples * 0.7), int(samples * 0.9)
    y = np.empty((samples, N_STEPS, AHEAD), dtype=np.float32)
    for k in range(AHEAD):
        y[..., k] = series[:, 1 + k : 1 + k + N_STEPS, 0]  # Y[:, t, k] = series[:, t + 1 + k]
    np.savez(
        path,
        series_train=series[:a, :, 0],
        series_valid=series[a:b, :, 0],
        X_train=series[:a, :N_STEPS],
        Y_train=y[:a],
        X_valid=series[a:b, :N_STEPS],
        target_valid=series[a:b, N_STEPS:, 0],
    )


def _timed(seconds: list[float], epochs: int) -> tuple[float, list[int]]:
    """Median seconds per epoch; leaves out the first epoch when there are 3 or more."""
    first = 1 if epochs >= 3 and len(seconds) >= 3 else 0
    return statistics.median(seconds[first:]), list(range(first + 1, len(seconds) + 1))


# -- peers (run in the worker; each imports its own libraries) -----------------------------------
def _torch_threads(threads: int):
    import torch

    if threads == 0:  # each framework's own default (seqcast then picks its own)
        return torch
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set in this process
        pass
    return torch


def _threads_note(torch, threads: int) -> str:
    seen = torch.get_num_threads()
    if threads == 0:
        return f"; torch threads at their default, {seen} after training"
    return "" if seen == threads else f"; torch threads were {seen} after training, not {threads}"


def run_seqcast(model: str, d: dict, epochs: int, threads: int) -> dict[str, Any]:
    torch = _torch_threads(threads)
    import seqcast
    from seqcast import Sequential
    from seqcast.layers import GRU, LSTM, RNN, Dense, LayerNormSimpleRNNCell, TimeDistributed

    def layer():
        if model == "lstm":
            return LSTM(UNITS, return_sequences=True)
        if model == "gru":
            return GRU(UNITS, return_sequences=True)
        if model == "peephole_lstm":
            return LSTM(UNITS, peephole=True, return_sequences=True)
        return RNN(LayerNormSimpleRNNCell(UNITS, epsilon=1e-3), return_sequences=True)

    def train():
        torch.manual_seed(SEED)
        net = Sequential([layer(), layer(), TimeDistributed(Dense(AHEAD))], input_shape=(None, 1))
        history = net.fit(
            d["X_train"],
            d["Y_train"],
            epochs=epochs,
            batch_size=BATCH,
            optimizer="adam",
            lr=LR,
            seed=SEED,
            verbose=False,
            threads=threads or None,  # 0: seqcast's own choice
        )
        return net, list(history.seconds_per_epoch)

    from seqcast.layers import _compiled

    stacked = _compiled.available()
    if stacked:
        _compiled.wavefront_stats(reset=True)
    net, seconds = train()
    runs = _compiled.wavefront_stats() if stacked else None
    pred = net.predict(d["X_valid"])[:, -1]
    paths = []
    for lay in net.layers:
        if getattr(lay, "is_recurrent", False) and hasattr(lay, "_path"):
            try:  # which implementation `auto` picked: torch.nn fused, C++ compiled, or loop
                paths.append(lay._path(torch.as_tensor(d["X_valid"][:2]), None))
            except Exception:  # noqa: BLE001 - introspection only
                paths.append("?")
    note = NOTES["seqcast"] + f"; recurrent implementation {'/'.join(paths) or '?'}"
    if os.environ.get("SEQCAST_NO_COMPILE", "") not in ("", "0"):
        note += "; SEQCAST_NO_COMPILE set (no C++ kernels)"
    if runs is not None and (runs["wavefront"] or runs["one_thread"]):
        note += (
            f"; LSTM stack: {runs['wavefront']} calls on {_compiled.stack_threads()} threads "
            f"({runs['no_overlap']} without overlap), {runs['one_thread']} on one thread"
        )
    return {
        "seconds": seconds,
        "pred": pred,
        "params": sum(p.numel() for p in net.parameters()),
        "version": f"seqcast {seqcast.__version__}, torch {torch.__version__}",
        "note": note + _threads_note(torch, threads),
    }


def run_torch(model: str, d: dict, epochs: int, threads: int) -> dict[str, Any]:
    torch = _torch_threads(threads)
    from torch import nn

    torch.manual_seed(SEED)
    rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU}[model]

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = rnn_class(1, UNITS, num_layers=2, batch_first=True)
            self.head = nn.Linear(UNITS, AHEAD)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out)

    net = Net()
    x, y = torch.as_tensor(d["X_train"]), torch.as_tensor(d["Y_train"])
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(SEED)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), BATCH):
            idx = order[i : i + BATCH]
            loss = nn.functional.mse_loss(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
    net.eval()
    with torch.no_grad():
        pred = net(torch.as_tensor(d["X_valid"]))[:, -1].numpy()
    return {
        "seconds": seconds,
        "pred": pred,
        "params": sum(p.numel() for p in net.parameters()),
        "version": f"torch {torch.__version__}",
        "note": NOTES["torch"] + _threads_note(torch, threads),
    }


def run_keras(model: str, d: dict, epochs: int, threads: int) -> dict[str, Any]:
    os.environ["KERAS_BACKEND"] = "tensorflow"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    keras.utils.set_random_seed(SEED)

    class LNSimpleRNNCell(keras.layers.Layer):
        """The study notes' cell: SimpleRNNCell(activation=None), LayerNormalization, tanh."""

        def __init__(self, units: int, activation: str = "tanh", **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units
            self.output_size = units
            self.simple_rnn_cell = keras.layers.SimpleRNNCell(units, activation=None)
            self.layer_norm = keras.layers.LayerNormalization(epsilon=1e-3)
            self.activation = keras.activations.get(activation)

        def build(self, input_shape) -> None:
            self.simple_rnn_cell.build(input_shape)
            self.layer_norm.build((input_shape[0], self.units))
            self.built = True

        def call(self, inputs, states):
            outputs, _ = self.simple_rnn_cell(inputs, states)
            norm_outputs = self.activation(self.layer_norm(outputs))
            return norm_outputs, [norm_outputs]

    class PeepholeLSTMCell(keras.layers.Layer):
        """An LSTM cell with peepholes: the equations of TF 2 Keras' PeepholeLSTMCell (which
        Keras 3 dropped) and of seqcast's LSTM(peephole=True), Keras' LSTM initialisers:
        i = σ(x W_i + h U_i + b_i + p_i c), f = σ(... + p_f c), c' = f c + i tanh(...),
        o = σ(... + p_o c'), h' = o tanh(c')."""

        def __init__(self, units: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.units = units
            self.state_size = [units, units]
            self.output_size = units

        def build(self, input_shape) -> None:
            h = self.units

            def unit_forget_bias(shape, dtype=None):
                ones = keras.ops.ones((h,), dtype=dtype)
                return keras.ops.concatenate([0 * ones, ones, 0 * ones, 0 * ones])

            self.kernel = self.add_weight(shape=(input_shape[-1], 4 * h), name="kernel")
            self.recurrent_kernel = self.add_weight(
                shape=(h, 4 * h), initializer="orthogonal", name="recurrent_kernel"
            )
            self.bias = self.add_weight(shape=(4 * h,), initializer=unit_forget_bias, name="bias")
            self.peepholes = [
                self.add_weight(shape=(h,), name=f"{gate}_peephole") for gate in ("i", "f", "o")
            ]  # glorot_uniform, as the kernel (TF 2 Keras' choice)

        def call(self, inputs, states):
            ops = keras.ops
            h, c = states
            z = ops.matmul(inputs, self.kernel) + ops.matmul(h, self.recurrent_kernel) + self.bias
            zi, zf, zg, zo = ops.split(z, 4, axis=-1)
            p_i, p_f, p_o = self.peepholes
            i = ops.sigmoid(zi + p_i * c)
            f = ops.sigmoid(zf + p_f * c)
            c = f * c + i * ops.tanh(zg)
            o = ops.sigmoid(zo + p_o * c)
            h = o * ops.tanh(c)
            return h, [h, c]

    def layer():
        if model == "lstm":
            return keras.layers.LSTM(UNITS, return_sequences=True)
        if model == "gru":
            return keras.layers.GRU(UNITS, return_sequences=True)
        if model == "peephole_lstm":
            return keras.layers.RNN(PeepholeLSTMCell(UNITS), return_sequences=True)
        return keras.layers.RNN(LNSimpleRNNCell(UNITS), return_sequences=True)

    seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    net = keras.Sequential(
        [
            keras.Input(shape=(None, 1)),
            layer(),
            layer(),
            keras.layers.TimeDistributed(keras.layers.Dense(AHEAD)),
        ]
    )
    net.compile(loss="mse", optimizer=keras.optimizers.Adam(learning_rate=LR))
    net.fit(
        d["X_train"],
        d["Y_train"],
        epochs=epochs,
        batch_size=BATCH,
        shuffle=True,
        verbose=0,
        callbacks=[EpochTimer()],
    )
    pred = net.predict(d["X_valid"], batch_size=1024, verbose=0)[:, -1]
    note = NOTES["keras"] + f"; jit_compile={net.jit_compile} (Keras' 'auto' default)"
    seen = (
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    )
    if threads and seen != (threads, threads):
        note += f"; TF intra/inter-op threads were {seen}, not {threads}"
    if not threads:
        note += "; TF threads at their defaults (0 = TF picks)"
    if model == "ln_rnn":
        note += (
            "; ln_rnn: the study notes' LNSimpleRNNCell (SimpleRNNCell + LayerNormalization) "
            "in keras.layers.RNN"
        )
    if model == "peephole_lstm":
        note += (
            "; peephole_lstm: a custom PeepholeLSTMCell (TF 2 Keras' PeepholeLSTMCell equations; "
            "Keras 3 has no peephole layer) in keras.layers.RNN"
        )
    return {
        "seconds": seconds,
        "pred": np.asarray(pred),
        "params": int(net.count_params()),
        "version": f"keras {keras.__version__}, tensorflow {tf.__version__}",
        "note": note,
    }


def _epoch_timer(pl, seconds: list[float], windows: list[list[int]]):
    """A Lightning callback: seconds of every epoch, and the windows each training step fed its
    RNN (a forward pre-hook on the first torch.nn.RNNBase inside the trained module)."""
    import torch

    class EpochTimer(pl.Callback):
        def on_train_start(self, trainer, module):
            rnn = next(m for m in module.modules() if isinstance(m, torch.nn.RNNBase))

            def count(mod, inputs):
                if mod.training and torch.is_grad_enabled():
                    windows[-1].append(int(inputs[0].shape[0]))

            self.hook = rnn.register_forward_pre_hook(count)

        def on_train_end(self, trainer, module):
            self.hook.remove()

        def on_train_epoch_start(self, trainer, module):
            windows.append([])
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def _windows_note(windows: list[list[int]], n_train: int) -> str:
    """Checks every epoch fed each training series' one window once, in batches of 32."""
    want = [BATCH] * (n_train // BATCH) + ([n_train % BATCH] if n_train % BATCH else [])
    for steps in windows:
        if sorted(steps, reverse=True) != want:
            raise RuntimeError(
                f"an epoch fed {sum(steps)} windows in {len(steps)} steps (largest "
                f"{max(steps, default=0)}), not {n_train} in {len(want)} steps of <= {BATCH}"
            )
    return f"; checked: every epoch fed {n_train} windows in {len(want)} steps of <= {BATCH}"


def run_darts(model: str, d: dict, epochs: int, threads: int) -> dict[str, Any]:
    torch = _torch_threads(threads)
    import darts
    import pytorch_lightning as pl
    from darts import TimeSeries
    from darts.models import BlockRNNModel

    seconds: list[float] = []
    windows: list[list[int]] = []
    train = [TimeSeries.from_values(s) for s in d["series_train"]]
    valid = [TimeSeries.from_values(s[:N_STEPS]) for s in d["series_valid"]]
    net = BlockRNNModel(
        model={"lstm": "LSTM", "gru": "GRU"}[model],
        input_chunk_length=N_STEPS,
        output_chunk_length=AHEAD,
        hidden_dim=UNITS,
        n_rnn_layers=2,
        batch_size=BATCH,
        n_epochs=epochs,
        optimizer_kwargs={"lr": LR},
        random_state=SEED,
        pl_trainer_kwargs={
            "callbacks": [_epoch_timer(pl, seconds, windows)],
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
            "enable_checkpointing": False,
            "accelerator": "cpu",
        },
    )
    net.fit(train, verbose=False)
    forecasts = net.predict(n=AHEAD, series=valid, batch_size=1024, verbose=False)
    pred = np.stack([f.values()[:, 0] for f in forecasts]).astype(np.float32)
    return {
        "seconds": seconds,
        "pred": pred,
        "params": sum(p.numel() for p in net.model.parameters()),
        "version": f"darts {darts.__version__}, torch {torch.__version__}",
        "note": NOTES["darts"] + _windows_note(windows, len(train)) + _threads_note(torch, threads),
    }


def run_neuralforecast(model: str, d: dict, epochs: int, threads: int) -> dict[str, Any]:
    torch = _torch_threads(threads)
    import neuralforecast
    import pandas as pd
    import pytorch_lightning as pl
    from neuralforecast import NeuralForecast
    from neuralforecast.losses.pytorch import MSE
    from neuralforecast.models import GRU, LSTM

    def frame(values: np.ndarray) -> pd.DataFrame:
        n, t = values.shape
        return pd.DataFrame(
            {
                "unique_id": np.repeat(np.arange(n), t),
                "ds": np.tile(np.arange(1, t + 1), n),
                "y": values.reshape(-1).astype(np.float32),
            }
        )

    seconds: list[float] = []
    windows: list[list[int]] = []
    n_train = len(d["series_train"])
    net = {"lstm": LSTM, "gru": GRU}[model](
        h=AHEAD,
        input_size=N_STEPS,
        encoder_n_layers=2,
        encoder_hidden_size=UNITS,
        decoder_layers=1,
        decoder_hidden_size=UNITS,
        recurrent=False,
        loss=MSE(),
        valid_loss=MSE(),
        max_steps=epochs * math.ceil(n_train / BATCH),
        learning_rate=LR,
        num_lr_decays=-1,
        early_stop_patience_steps=-1,
        batch_size=BATCH,
        windows_batch_size=None,  # every eligible window of the batch's 32 series, no resampling
        # it pads h zeros after each series and trains on windows with a partly padded (masked)
        # horizon too: 10 per series here. 1.0 keeps the one window with all 10 targets.
        training_data_availability_threshold=1.0,
        scaler_type="identity",
        random_seed=SEED,
        callbacks=[_epoch_timer(pl, seconds, windows)],
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        limit_val_batches=0,
        accelerator="cpu",
        devices=1,
    )
    nf = NeuralForecast(models=[net], freq=1)
    nf.fit(df=frame(d["series_train"]), val_size=0)
    out = nf.predict(df=frame(d["series_valid"][:, :N_STEPS]))
    out = out.sort_values(["unique_id", "ds"])
    (column,) = [c for c in out.columns if c not in ("unique_id", "ds")]  # its model's name
    pred = out[column].to_numpy(np.float32).reshape(-1, AHEAD)
    if len(seconds) != epochs:
        raise RuntimeError(f"neuralforecast ran {len(seconds)} epochs, not {epochs}")
    return {
        "seconds": seconds,
        "pred": pred,
        "params": sum(p.numel() for p in net.parameters()),
        "version": f"neuralforecast {neuralforecast.__version__}, torch {torch.__version__}",
        "note": NOTES["neuralforecast"]
        + _windows_note(windows, n_train)
        + _threads_note(torch, threads),
    }


RUNNERS = {
    "seqcast": run_seqcast,
    "torch": run_torch,
    "keras": run_keras,
    "darts": run_darts,
    "neuralforecast": run_neuralforecast,
}

#: the packages each peer needs: a failed import of these means "skipped", not "failed"
IMPORTS = {
    "seqcast": ["torch", "seqcast"],
    "torch": ["torch"],
    "keras": ["tensorflow", "keras"],
    "darts": ["torch", "darts", "pytorch_lightning"],
    "neuralforecast": ["torch", "neuralforecast", "pytorch_lightning", "pandas"],
}


def worker(peer: str, model: str, epochs: int, threads: int, data: str, result: str) -> None:
    """One (model, peer) run in this process; writes its result JSON to `result`."""
    row: dict[str, Any] = {"status": "ok"}
    try:
        if peer == "keras":
            os.environ["KERAS_BACKEND"] = "tensorflow"
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        for name in IMPORTS[peer]:
            __import__(name)
    except ImportError as exc:
        row = {"status": "skipped", "reason": f"{type(exc).__name__}: {exc}"}
    else:
        try:
            d = dict(np.load(data))
            r = RUNNERS[peer](model, d, epochs, threads)
            pred = np.asarray(r["pred"], dtype=np.float64).reshape(-1, AHEAD)
            mse = float(np.mean((pred - d["target_valid"]) ** 2))
            row |= {k: r[k] for k in ("seconds", "params", "version", "note")}
            row["val_last_step_mse"] = mse
            if not math.isfinite(mse) or len(r["seconds"]) != epochs:
                raise RuntimeError(f"val mse {mse}, {len(r['seconds'])} timed epochs")
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0]
            row = {"status": "failed", "reason": f"{type(exc).__name__}: {first}"}
    with open(result, "w") as f:
        json.dump(row, f)


# -- the benchmark (main process) ----------------------------------------------------------------
def run_one(peer: str, model: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": model,
        "peer": peer,
        "status": "skipped",
        "reason": None,
        "sec_per_epoch": None,
        "timed_epochs": None,
        "epoch_seconds": None,
        "val_last_step_mse": None,
        "ratio_vs_seqcast": None,
        "threads": args.threads,
        "epochs": args.epochs,
        "version": None,
        "params": None,
        "note": NOTES[peer],
    }
    if (peer, model) in UNSUPPORTED:
        return row | {"reason": UNSUPPORTED[peer, model]}
    result = tmp / f"{peer}-{model}.json"
    t = str(args.threads)
    pinned = {
        "OMP_NUM_THREADS": t,
        "MKL_NUM_THREADS": t,
        "TF_NUM_INTRAOP_THREADS": t,
        "TF_NUM_INTEROP_THREADS": t,
    }
    env = {
        **os.environ,
        **(pinned if args.threads else {}),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONWARNINGS": "ignore",
    }
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", peer, "--models", model]
    cmd += ["--epochs", str(args.epochs), "--threads", t, "--data", str(tmp / "data.npz")]
    proc = subprocess.run(
        [*cmd, "--result", str(result)], capture_output=True, text=True, env=env, cwd=tmp
    )
    if not result.exists():
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return row | {"status": "failed", "reason": f"worker exited {proc.returncode}: {tail}"}
    r = json.loads(result.read_text())
    row |= {"status": r["status"], "reason": r.get("reason")}
    if r["status"] == "ok":
        sec, timed = _timed(r["seconds"], args.epochs)
        row |= {
            "sec_per_epoch": sec,
            "timed_epochs": timed,
            "epoch_seconds": r["seconds"],
            "val_last_step_mse": r["val_last_step_mse"],
            "version": r["version"],
            "params": r["params"],
            "note": r["note"],
        }
    elif r["status"] == "failed" and args.verbose_failures:
        print(proc.stderr, file=sys.stderr)
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    base = {r["model"]: r["sec_per_epoch"] for r in rows if r["peer"] == "seqcast"}
    for r in rows:
        b = base.get(r["model"])
        if r["sec_per_epoch"] is not None and b:
            r["ratio_vs_seqcast"] = r["sec_per_epoch"] / b


def fmt(v: float | None, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _split(text: str, allowed: list[str], what: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        parser.error(f"unknown {what}(s) {unknown}; expected some of {', '.join(allowed)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=10000, help="series generated (10000)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for every peer (torch, TF, OMP); 0: each framework's own default",
    )
    parser.add_argument("--out", help="write the JSON list of results here")
    parser.add_argument(
        "--verbose-failures", action="store_true", help="print a failed worker's traceback"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = _split(args.models, MODELS, "model", parser)
    if args.worker:
        worker(args.worker, models[0], args.epochs, args.threads, args.data, args.result)
        return
    peers = _split(args.peers, PEERS, "peer", parser)
    if args.epochs < 1 or args.threads < 0 or args.samples < 10:
        parser.error("--epochs must be >= 1, --threads >= 0, --samples >= 10")
    print(
        f"{args.samples} series, {args.epochs} epochs, batch {BATCH}, {args.threads} thread(s) "
        "per peer, each run in its own process",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="seqcast-peers-") as tmp:
        make_data(args.samples, Path(tmp) / "data.npz")
        for model in models:
            for peer in peers:
                row = run_one(peer, model, args, Path(tmp))
                rows.append(row)
                add_ratios(rows)
                detail = (
                    f"sec/epoch {fmt(row['sec_per_epoch'], '.3f')}  "
                    f"val_mse {fmt(row['val_last_step_mse'])}"
                    if row["status"] == "ok"
                    else row["reason"]
                )
                print(f"{model:14} {peer:15} {row['status']:8} {detail}", flush=True)
                if args.out:
                    with open(args.out, "w") as f:
                        json.dump(rows, f, indent=1)
    print(f"\n{'model':14} {'peer':15} {'sec/epoch':>10} {'ratio':>7} {'val_mse':>8}")
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['model']:14} {r['peer']:15} {r['status']:>10}")
            continue
        print(
            f"{r['model']:14} {r['peer']:15} {fmt(r['sec_per_epoch'], '.3f'):>10} "
            f"{fmt(r['ratio_vs_seqcast'], '.2f'):>7} {fmt(r['val_last_step_mse']):>8}"
        )


if __name__ == "__main__":
    main()
