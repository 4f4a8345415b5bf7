"""The divergence guard: a non-finite or exploding loss (or non-finite gradients) stops
training with one line naming the epoch, the step and the likely cause, the model keeps its
last good weights, and `seqcast fit` exits 3 without writing a model."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seqcast.errors import NotFittedError, SeqcastError, TrainingDivergedError
from seqcast.layers import LSTM, Dense
from seqcast.sequential import Sequential
from seqcast.training import TrainSettings, fit_arrays

AIRLINE = (
    Path(__file__).resolve().parents[1] / "src" / "seqcast" / "data" / "airline_passengers.csv"
)


def data(n=256, steps=10, seed=0):  # 8 batches of 32
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, 1)).astype(np.float32)
    return x, x[:, -3:, 0].sum(axis=1, keepdims=True)


def lstm():
    torch.manual_seed(1)
    return Sequential([LSTM(8), Dense(1)], input_shape=(10, 1))


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("trainer", ["lean", "lightning"])
def test_lr_10000_stops_in_the_first_epoch_and_keeps_the_starting_weights(trainer):
    x, y = data()
    model = lstm()
    start = weights(model)
    with pytest.raises(TrainingDivergedError) as caught:
        fit_arrays(
            model,
            x,
            y,
            TrainSettings.from_kwargs(epochs=5, lr=10000, seed=0, progress=False, trainer=trainer),
        )
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("training diverged at epoch 1 of 5, step ")
    assert "times its first value" in message
    assert "the learning rate (10000) is likely too high, or the data unscaled" in message
    assert message.endswith("the model keeps the weights of the start, before training")
    assert same(weights(model), start)
    assert isinstance(caught.value, SeqcastError)


class NanAtCall:
    """MSE, except that call `bad` (from 1) returns NaN."""

    def __init__(self, bad):
        self.bad, self.calls = bad, 0

    def __call__(self, pred, y):
        self.calls += 1
        loss = torch.nn.functional.mse_loss(pred, y)
        return loss * float("nan") if self.calls == self.bad else loss


def test_a_nan_loss_names_its_epoch_and_step_and_the_last_good_epoch_is_kept():
    x, y = data()
    settings = TrainSettings.from_kwargs(epochs=4, seed=0, progress=False)
    after_one_epoch = lstm()
    fit_arrays(after_one_epoch, x, y, settings.replace(epochs=1))
    model = lstm()
    with pytest.raises(TrainingDivergedError) as caught:
        fit_arrays(model, x, y, settings.replace(loss=NanAtCall(8 + 4)))
    message = str(caught.value)
    assert "at epoch 2 of 4, step 4 of 8: the loss became nan;" in message
    assert message.endswith("the model keeps the weights of epoch 1")
    assert same(weights(model), weights(after_one_epoch))


class InfGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def test_non_finite_gradients_with_a_finite_loss_are_caught():
    x, y = data()
    calls = []

    def loss(pred, target):  # the 8th (last) step's gradients are infinite, its loss is not
        calls.append(1)
        pred = InfGradient.apply(pred) if len(calls) == 8 else pred
        return torch.nn.functional.mse_loss(pred, target)

    model = lstm()
    start = weights(model)
    with pytest.raises(
        TrainingDivergedError,
        match=r"epoch 1 of 2, step 8 of 8: the gradients "
        r"became non-finite",
    ):
        fit_arrays(
            model, x, y, TrainSettings.from_kwargs(epochs=2, seed=0, progress=False, loss=loss)
        )
    assert same(weights(model), start)


def test_an_ordinary_run_and_a_high_but_sane_rate_pass_the_guard():
    x, y = data()
    for lr in (1e-3, 1e-1):
        history = fit_arrays(
            lstm(), x, y, TrainSettings.from_kwargs(epochs=3, lr=lr, seed=0, progress=False)
        )
        assert history.epochs == 3 and np.isfinite(history.history["loss"]).all()


def test_the_explosion_check_can_be_turned_off_but_not_the_non_finite_one():
    x, y = data()
    settings = TrainSettings.from_kwargs(epochs=2, seed=0, progress=False, divergence_factor=None)
    with pytest.raises(TrainingDivergedError, match="the loss became nan"):
        fit_arrays(lstm(), x, y, settings.replace(loss=NanAtCall(3)))


def test_a_checkpoint_is_never_written_from_a_diverged_run(tmp_path):
    from seqcast.training.checkpoints import load_checkpoint

    x, y = data()
    settings = TrainSettings.from_kwargs(
        epochs=3, seed=0, progress=False, checkpoint_dir=str(tmp_path), checkpoint_every=2
    )
    model = lstm()
    with pytest.raises(TrainingDivergedError, match="epoch 2 of 3, step 4 of 8"):
        fit_arrays(model, x, y, settings.replace(loss=NanAtCall(8 + 4)))
    counters = load_checkpoint(tmp_path)["counters"]
    assert (counters["epoch"], counters["step"]) == (1, 2)  # the last one before the NaN
    assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path)["model"].values())


def diverged_forecaster():
    from seqcast import Forecaster, datasets

    fc = Forecaster("lstm", window=12, horizon=12, lr=10000, epochs=5, seed=0, progress=False)
    with pytest.raises(TrainingDivergedError, match="epoch 1 of 5"):
        fc.fit(datasets.airline_passengers())
    return fc


def test_forecaster_fit_with_lr_10000_raises():
    diverged_forecaster()


def test_a_forecaster_whose_fit_diverged_is_not_fitted():
    with pytest.raises(NotFittedError, match="not fitted"):
        diverged_forecaster().predict()


def test_a_fitted_forecaster_whose_refit_diverges_is_not_fitted():
    from seqcast import Forecaster, datasets

    fc = Forecaster("lstm", window=12, horizon=12, epochs=1, seed=0, progress=False)
    fc.fit(datasets.airline_passengers())
    fc.lr = 10000
    with pytest.raises(TrainingDivergedError):
        fc.fit(datasets.airline_passengers())
    with pytest.raises(NotFittedError, match="not fitted"):
        fc.predict()


def test_seqcast_fit_with_lr_10000_exits_3_with_one_line_and_writes_no_model(tmp_path):
    out = tmp_path / "m"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "seqcast.cli",
            "fit",
            str(AIRLINE),
            "--model",
            "lstm",
            "--window",
            "12",
            "--horizon",
            "12",
            "--lr",
            "10000",
            "--epochs",
            "5",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 3
    lines = result.stderr.splitlines()  # not stripped: no empty line from an unstarted bar
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: training diverged at epoch 1 of 5, step ")
    assert "learning rate (10000) is likely too high" in lines[0]
    assert not out.exists()
    print(f"exit {result.returncode}: {lines[0]}")


def test_a_diverged_lightning_fit_restores_the_thread_counts_at_once():
    """Lightning skips its callbacks' teardown when fit raises: the thread counts the run set
    must still be restored before fit_arrays returns, not whenever garbage collection runs."""
    import gc

    from seqcast.layers import _kernels

    gc.disable()  # a collection must not do the restoring in this test's place
    try:
        before = (torch.get_num_threads(), _kernels._stack_threads)
        x, y = data()
        settings = TrainSettings.from_kwargs(
            epochs=5, lr=10000, seed=0, progress=False, trainer="lightning", threads=1
        )
        with pytest.raises(TrainingDivergedError):
            fit_arrays(lstm(), x, y, settings)
        assert (torch.get_num_threads(), _kernels._stack_threads) == before
    finally:
        gc.enable()
