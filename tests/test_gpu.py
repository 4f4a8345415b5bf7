"""GPU paths: layers, training, checkpoints, forecasting and imputation on CUDA, and a model
saved on CUDA that loads and forecasts on a CPU-only process. Every test here skips where no
CUDA device is present (CI has none); tests elsewhere cover the same code on the CPU."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seqcast import Forecaster, Sequential
from seqcast.data.datasets import airline_passengers
from seqcast.impute import impute
from seqcast.layers import GRU, LSTM, Dense, _compiled

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

AIRLINE_CSV = Path(__file__).parents[1] / "src" / "seqcast" / "data" / "airline_passengers.csv"


@pytest.mark.parametrize("layer", [LSTM, GRU])
def test_recurrent_layers_agree_on_cuda_and_cpu(layer):
    """cuDNN on CUDA against the CPU path, same weights, float32: outputs and input gradients
    agree within 1e-5 (float32 rounding over 30 steps)."""
    torch.manual_seed(0)
    cpu = Sequential([layer(8, return_sequences=True), Dense(2)], input_shape=(None, 3))
    gpu = Sequential([layer(8, return_sequences=True), Dense(2)], input_shape=(None, 3))
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    x = torch.randn(4, 30, 3, requires_grad=True)
    xg = x.detach().to("cuda").requires_grad_(True)
    out, out_g = cpu(x), gpu(xg)
    torch.testing.assert_close(out_g.cpu(), out, atol=1e-5, rtol=1e-5)
    out.sum().backward()
    out_g.sum().backward()
    torch.testing.assert_close(xg.grad.cpu(), x.grad, atol=1e-5, rtol=1e-5)


def test_compiled_kernels_on_cuda_fall_back_to_the_loop_and_say_so():
    layer = LSTM(8, implementation="compiled")
    model = Sequential([layer], input_shape=(None, 3)).to("cuda")
    x = torch.randn(2, 10, 3, device="cuda")
    with pytest.warns(_compiled.CompiledFallbackWarning, match="on cuda"):
        looped = model(x)
    layer.implementation = "auto"  # quietly cuDNN
    torch.testing.assert_close(model(x), looped, atol=1e-5, rtol=1e-5)


def test_sequential_fits_on_cuda_and_predicts_from_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 12, 1)).astype(np.float32)
    y = x[:, -3:, 0].sum(axis=1, keepdims=True)
    model = Sequential([GRU(16), Dense(1)], input_shape=(None, 1))
    history = model.fit(x, y, epochs=20, batch_size=32, lr=1e-2, accelerator="gpu", seed=0)
    assert next(model.parameters()).device.type == "cuda"
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    pred = model.predict(x)
    assert pred.shape == (256, 1) and np.isfinite(pred).all()


def test_checkpoints_written_on_cuda_resume_on_cuda(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(128, 8, 1)).astype(np.float32)
    y = x[:, -1:, 0]

    def run(epochs, **kw):
        torch.manual_seed(0)
        model = Sequential([LSTM(8), Dense(1)], input_shape=(None, 1))
        model.fit(x, y, epochs=epochs, seed=0, accelerator="gpu", **kw)
        return model

    whole = run(4)
    run(2, checkpoint_dir=str(tmp_path / "ck"))
    resumed = run(4, checkpoint_dir=str(tmp_path / "ck"), resume=True)
    for a, b in zip(resumed.state_dict().values(), whole.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)  # cuDNN need not be bitwise


@pytest.mark.parametrize("interval_method", ["conformal", "mc_dropout"])
def test_forecaster_trains_on_cuda_and_a_cpu_only_process_loads_it(tmp_path, interval_method):
    frame = airline_passengers()
    fc = Forecaster(
        "lstm", window=24, horizon=12, season=12, epochs=5, units=16, dropout=0.1,
        interval_method=interval_method, mc_samples=20, train_options={"accelerator": "gpu"},
    ).fit(frame)  # fmt: skip
    assert next(fc.model_.parameters()).device.type == "cuda"
    pred = fc.predict(intervals=[80])
    assert np.isfinite(pred[["y_hat", "y_lo_80", "y_hi_80"]].to_numpy()).all()
    fc.save(tmp_path / "m")
    script = (
        "import torch, sys; assert not torch.cuda.is_available();"
        "from seqcast import Forecaster;"
        f"Forecaster.load({str(tmp_path / 'm')!r}).predict().to_csv(sys.argv[1], index=False)"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "cpu.csv"
    subprocess.run([sys.executable, "-c", script, str(out)], env=env, check=True, timeout=300)
    np.testing.assert_allclose(pd.read_csv(out)["y_hat"], pred["y_hat"], rtol=1e-4)


def test_cli_fits_on_the_gpu_and_predicts_on_a_cpu_only_process(tmp_path):
    run = [sys.executable, "-m", "seqcast.cli"]
    fit = [*run, "fit", str(AIRLINE_CSV), "--model", "gru", "--window", "24", "--horizon", "12"]
    fit += ["--epochs", "5", "--accelerator", "gpu", "--out", str(tmp_path / "m"), "--quiet"]
    subprocess.run(fit, check=True, timeout=300)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "p.csv"
    predict = [*run, "predict", str(tmp_path / "m"), "--out", str(out)]
    subprocess.run(predict, env=env, check=True, timeout=300)
    pred = pd.read_csv(out)
    assert len(pred) == 12 and np.isfinite(pred["y_hat"]).all()


def test_impute_runs_its_network_on_cuda():
    frame = airline_passengers()
    frame.loc[[20, 21, 70, 100], "y"] = np.nan
    result = impute(frame, window=12, units=8, epochs=3, method="rnn")  # "auto": on CUDA
    assert result.frame["y"].notna().all()
