"""The trainer behind Sequential.fit and Forecaster.fit."""

import copy
import os

import numpy as np
import pytest
import torch

from seqcast.errors import SeqcastError
from seqcast.layers import GRU, Dense, Flatten
from seqcast.metrics import last_time_step_mse
from seqcast.sequential import Sequential
from seqcast.training import KerasAdam


def data(n=256, steps=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, steps, 1)).astype(np.float32)
    y = x[:, -3:, 0].sum(axis=1, keepdims=True)
    return x, y


def linear_model(steps=10):
    return Sequential([Flatten(), Dense(1)], input_shape=(steps, 1))


def test_history_has_per_epoch_losses_and_metrics():
    x, y = data()
    model = linear_model()
    history = model.fit(
        x, y, epochs=3, validation_data=data(64, seed=1), metrics=["mae"], seed=0, verbose=False
    )
    assert set(history.history) == {"loss", "mae", "val_loss", "val_mae"}
    assert all(len(v) == 3 for v in history.history.values())
    assert history.history["loss"][-1] < history.history["loss"][0]
    scores = model.evaluate(*data(64, seed=1))
    assert scores["loss"] == pytest.approx(history.history["val_loss"][-1], rel=1e-5)
    assert model.predict(x[:5]).shape == (5, 1)


def test_same_seed_same_weights_and_no_files_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = data()
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = Sequential([GRU(4), Dense(1)], input_shape=(10, 1))
        model.fit(x, y, epochs=2, seed=11, verbose=False)
        runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(runs[0], runs[1])
    assert os.listdir(tmp_path) == []  # no lightning_logs, no checkpoints


def test_clip_norm_bounds_each_update():
    x, y = data(32)
    y = y * 1000  # huge gradients
    model = linear_model()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    model.fit(
        x,
        y,
        epochs=1,
        batch_size=32,
        optimizer="sgd",
        lr=1.0,
        clip_norm=1e-3,
        seed=0,
        verbose=False,
    )
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert float((after - before).norm()) <= 1e-3 + 1e-6


def test_clip_value_bounds_each_coordinate():
    x, y = data(32)
    model = linear_model()
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    model.fit(
        x,
        y * 1000,
        epochs=1,
        batch_size=32,
        optimizer="sgd",
        lr=1.0,
        clip_value=1e-4,
        seed=0,
        verbose=False,
    )
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert float((after - before).abs().max()) <= 1e-4 + 1e-6  # float32 rounding of p - lr*g


def test_early_stopping_stops_and_restores_the_best_epoch():
    x, y = data()
    xv, yv = data(64, seed=2)
    model = linear_model()
    # validation targets the opposite of training ones: val_loss rises as training fits
    history = model.fit(
        x, y, epochs=30, validation_data=(xv, -yv), early_stopping=2, lr=0.05, seed=0, verbose=False
    )
    assert history.epochs < 30
    best = min(history.history["val_loss"])
    assert model.evaluate(xv, -yv)["loss"] == pytest.approx(best, rel=1e-5)


def test_last_time_step_mse_is_a_training_metric():
    x = np.random.default_rng(0).normal(size=(64, 8, 1)).astype(np.float32)
    y = np.repeat(x, 3, axis=2)  # (64, 8, 3)
    model = Sequential([GRU(4, return_sequences=True), Dense(3)], input_shape=(None, 1))
    history = model.fit(x, y, epochs=1, metrics=[last_time_step_mse], seed=0, verbose=False)
    assert "last_time_step_mse" in history.history


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "`epochs` must be a positive integer"),
        ({"optimizer": "adamax"}, "unknown optimizer 'adamax'"),
        ({"loss": "hinge"}, "unknown loss 'hinge'"),
        ({"metrics": ["r2"]}, "unknown metric 'r2'"),
        ({"clip_norm": 1.0, "clip_value": 1.0}, "either `clip_norm` or `clip_value`"),
        ({"early_stopping": 3}, "early stopping watches val_loss"),
        ({"trainer": "keras"}, "unknown trainer 'keras'"),
        ({"threads": 0}, "`threads` must be a positive integer"),
    ],
)
def test_fit_rejects_bad_settings(kwargs, message):
    x, y = data(16)
    with pytest.raises(SeqcastError, match=message):
        linear_model().fit(x, y, verbose=False, **kwargs)


def test_fit_rejects_bad_arrays():
    x, y = data(16)
    with pytest.raises(SeqcastError, match="X has 16 samples but y has 8"):
        linear_model().fit(x, y[:8], verbose=False)
    with pytest.raises(SeqcastError, match="`X` must have a sample axis and at least one more"):
        linear_model().fit(x[:, 0, 0], y, verbose=False)
    x[0, 0, 0] = np.nan
    with pytest.raises(SeqcastError, match="contains NaN"):
        linear_model().fit(x, y, verbose=False)


def test_one_target_per_sample_may_be_a_1d_array():
    # Keras takes y of shape (N,) for a Dense(1) output; so do fit and evaluate.
    x, y = data()
    xv, yv = data(64, seed=1)
    model = linear_model()
    history = model.fit(x, y[:, 0], epochs=3, validation_data=(xv, yv[:, 0]), lr=0.05, seed=0,
                        verbose=False)  # fmt: skip
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(xv, yv[:, 0])["loss"] == pytest.approx(
        model.evaluate(xv, yv)["loss"], rel=1e-6
    )


def test_lean_and_lightning_engines_train_alike():
    # Same data, seed and settings: the two engines give the same history keys, losses of
    # the same size (their batch orders differ), and neither writes files.
    x, y = data()
    val = data(64, seed=1)
    histories = {}
    for trainer in ("lean", "lightning"):
        model = linear_model()
        histories[trainer] = model.fit(
            x, y, epochs=4, validation_data=val, metrics=["mae"], lr=0.05, seed=0,
            verbose=False, trainer=trainer,
        )  # fmt: skip
    lean, lightning = histories["lean"].history, histories["lightning"].history
    assert set(lean) == set(lightning) == {"loss", "mae", "val_loss", "val_mae"}
    assert lean["val_loss"][-1] < lean["val_loss"][0]
    assert lean["val_loss"][-1] == pytest.approx(lightning["val_loss"][-1], rel=0.3)


def test_small_cpu_models_train_on_one_thread_and_the_setting_is_restored():
    from seqcast import training

    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = linear_model()

        def forward(self, x):
            seen.append(torch.get_num_threads())
            return self.inner(x)

    x, y = data(64)
    before = torch.get_num_threads()
    settings = training.TrainSettings(epochs=1, progress=False, seed=0)
    training.fit_arrays(Probe(), x, y, settings)
    assert set(seen) == {1}
    assert torch.get_num_threads() == before
    seen.clear()
    training.fit_arrays(Probe(), x, y, training.TrainSettings(epochs=1, progress=False, threads=2))
    assert set(seen) == {2}
    assert torch.get_num_threads() == before


def test_lean_progress_prints_one_line_per_epoch(capsys):
    x, y = data(64)
    linear_model().fit(x, y, epochs=2, seed=0, verbose=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("epoch ")]
    assert [ln.split()[1] for ln in lines] == ["1/2", "2/2"]
    assert "loss" in lines[0]


def test_rmsprop_uses_keras_defaults():
    # The notes' airline recipe compiles with Keras' "rmsprop": rho 0.9, epsilon 1e-7.
    from seqcast import training

    model = linear_model()
    opt = training._optimizer(model, training.TrainSettings(optimizer="rmsprop"))
    group = opt.param_groups[0]
    assert (group["alpha"], group["eps"], group["lr"]) == (0.9, 1e-7, 1e-3)


def keras_adam_reference(grads, lr=1e-3, b1=0.9, b2=0.999, eps=1e-7):
    """Keras 3's Adam.update_step, in float64: epsilon goes on the uncorrected sqrt(v)."""
    p, m, v = np.zeros_like(grads[0]), np.zeros_like(grads[0]), np.zeros_like(grads[0])
    for t, g in enumerate(grads, start=1):
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        m += (g - m) * (1 - b1)
        v += (g * g - v) * (1 - b2)
        p -= m * alpha / (np.sqrt(v) + eps)
    return p


@pytest.mark.parametrize("trainer", ["lean", "lightning"])
def test_keras_adam_takes_keras_update(trainer):
    # The handson models' first gradients are mostly 1e-6 to 1e-5. Keras' epsilon (1e-7 on
    # sqrt(v), i.e. 3.2e-6 on the bias-corrected sqrt(v) at step 1) shortens those first steps
    # by tens of percent; torch's default (1e-8 on the corrected one) takes nearly full steps.
    from seqcast import training

    rng = np.random.default_rng(0)
    scales = np.array([1e-8, 1e-6, 1e-5, 1e-3, 1.0])
    grads = [rng.normal(size=5) * scales for _ in range(30)]
    param = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    holder = torch.nn.Module()
    holder.param = param
    settings = training.TrainSettings(optimizer="keras_adam", trainer=trainer)
    if trainer == "lean":
        opt = training._optimizer(holder, settings)
    else:
        opt = training._make_module(holder, settings, {}).configure_optimizers()
    for g in grads:
        param.grad = torch.as_tensor(g)
        opt.step()
    np.testing.assert_allclose(param.detach().numpy(), keras_adam_reference(grads), rtol=1e-6)


def _stepped_copies(make_optimizer, steps: int, drop_grad_at: int | None = None):
    """The parameters of two copies of one model after `steps` updates from the same gradients:
    one by torch's `optimizer.step()`, one by `_FusedAdamStep`."""
    from seqcast.training import _FusedAdamStep

    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))]
    models.append(copy.deepcopy(models[0]))
    optimizers = [make_optimizer(m.parameters()) for m in models]
    fast = _FusedAdamStep(optimizers[1])
    for step in range(steps):
        grads = [torch.randn_like(p) for p in models[0].parameters()]
        fast.zero_grad()
        for model in models:
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = None if step == drop_grad_at and p.dim() == 1 else g.clone()
        optimizers[0].step()
        fast()
    return [list(m.parameters()) for m in models], fast


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda ps: torch.optim.Adam(ps, lr=1e-2, fused=True),
        lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, fused=True),
        lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=0.1, maximize=True, fused=True),
        lambda ps: KerasAdam(ps, lr=1e-2, fused=True),
    ],
    ids=["adam", "adamw", "adam-l2-maximize", "keras_adam"],
)
def test_fused_adam_step_equals_torch_step_bit_for_bit(make_optimizer):
    (reference, fast), stepper = _stepped_copies(make_optimizer, steps=6, drop_grad_at=3)
    assert stepper.groups is not None  # the direct path ran (after the first step)
    for a, b in zip(reference, fast, strict=True):
        assert torch.equal(a, b)


def test_fused_adam_step_leaves_other_optimizers_to_torch():
    (reference, fast), stepper = _stepped_copies(
        lambda ps: torch.optim.Adam(ps, lr=1e-2, amsgrad=True, fused=True), steps=3
    )
    assert stepper.groups is None
    for a, b in zip(reference, fast, strict=True):
        assert torch.equal(a, b)
    (reference, fast), stepper = _stepped_copies(lambda ps: torch.optim.SGD(ps, lr=0.1), steps=3)
    assert stepper.groups is None
    for a, b in zip(reference, fast, strict=True):
        assert torch.equal(a, b)


def test_fused_adam_step_runs_registered_step_hooks():
    from seqcast.training import _FusedAdamStep

    layer = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(layer.parameters(), fused=True)
    calls = []
    optimizer.register_step_pre_hook(lambda *args: calls.append(1))
    step = _FusedAdamStep(optimizer)
    for _ in range(3):
        step.zero_grad()
        layer(torch.ones(4, 2)).sum().backward()
        step()
    assert step.groups is None and len(calls) == 3
