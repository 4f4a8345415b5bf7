"""The trainer behind Sequential.fit and Forecaster.fit."""

import copy
import logging
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


def flat(model):
    """All parameters as one CPU vector (fit may have trained the model on a GPU)."""
    return torch.cat([p.detach().cpu().flatten() for p in model.parameters()])


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
        runs.append(flat(model))
    assert torch.equal(runs[0], runs[1])
    assert os.listdir(tmp_path) == []  # no lightning_logs, no checkpoints


def test_clip_norm_bounds_each_update():
    x, y = data(32)
    y = y * 1000  # huge gradients
    model = linear_model()
    before = flat(model)
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
    after = flat(model)
    assert float((after - before).norm()) <= 1e-3 + 1e-6


def test_clip_value_bounds_each_coordinate():
    x, y = data(32)
    model = linear_model()
    before = flat(model)
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
    after = flat(model)
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
    settings = training.TrainSettings(epochs=1, progress=False, seed=0, accelerator="cpu")
    training.fit_arrays(Probe(), x, y, settings)
    assert set(seen) == {1}
    assert torch.get_num_threads() == before
    seen.clear()
    training.fit_arrays(Probe(), x, y, settings.replace(threads=2))
    assert set(seen) == {2}
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("trainer", ["lean", "lightning"])
def test_progress_is_one_info_line_per_epoch_and_on_epoch_end_sees_each(trainer, caplog, capsys):
    x, y = data(64)
    seen = []
    with caplog.at_level(logging.INFO, logger="seqcast.training"):
        history = linear_model().fit(
            x, y, epochs=2, validation_data=data(32, seed=1), seed=0, verbose=True,
            trainer=trainer, on_epoch_end=lambda epoch, values: seen.append((epoch, values)),
        )  # fmt: skip
    lines = [r.getMessage() for r in caplog.records if r.name == "seqcast.training"]
    assert [ln.split()[1] for ln in lines] == ["1/2", "2/2"]
    assert "val_loss" in lines[0] and caplog.records[-1].values["loss"] == seen[-1][1]["loss"]
    assert [epoch for epoch, _ in seen] == [0, 1]
    assert [values["val_loss"] for _, values in seen] == history.history["val_loss"]
    out = capsys.readouterr()
    assert "epoch" not in out.out + out.err  # logging only, never print


def test_no_progress_no_log_lines(caplog):
    x, y = data(64)
    with caplog.at_level(logging.INFO, logger="seqcast.training"):
        linear_model().fit(x, y, epochs=2, seed=0, progress=False)
    assert not [r for r in caplog.records if r.name == "seqcast.training"]


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


# -- one list of settings ----------------------------------------------------------------------


def test_settings_are_checked_by_name_and_verbose_is_progress():
    from seqcast.training import TrainSettings

    settings = TrainSettings.from_kwargs(epochs=3, lr=0.01, verbose=False)
    assert (settings.epochs, settings.lr, settings.progress) == (3, 0.01, False)
    assert settings.replace(schedule="cosine").schedule == "cosine" and settings.schedule is None
    with pytest.raises(SeqcastError, match=r"unknown training setting 'epoch'.*epochs, batch_size"):
        TrainSettings.from_kwargs(epoch=3)
    with pytest.raises(SeqcastError, match="unknown schedule 'linear'"):
        settings.replace(schedule="linear")
    with pytest.raises(SeqcastError, match="`progress` given twice"):
        TrainSettings.from_kwargs(verbose=False, progress=True)
    x, y = data(16)
    with pytest.raises(SeqcastError, match="unknown training setting 'validation_split'"):
        linear_model().fit(x, y, validation_split=0.2)
    with pytest.raises(SeqcastError, match="third argument is a TrainSettings"):
        linear_model().fit(x, y, 5)


def test_fit_takes_settings_and_keyword_overrides():
    from seqcast.training import TrainSettings

    x, y = data(64)
    base = TrainSettings(epochs=2, lr=0.05, seed=0, progress=False)
    history = linear_model().fit(x, y, base, epochs=3, metrics=["mae"])
    assert history.epochs == 3 and "mae" in history.history
    assert linear_model().fit(x, y, verbose=False).epochs == 1  # Keras' default: one epoch


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"trainer": "lean", "log_dir": "logs"}, "trainer='lean'.*a log_dir needs"),
        ({"trainer": "lean", "devices": 2}, "devices=2 needs trainer='lightning'"),
        ({"trainer": "lean", "strategy": "ddp"}, "strategy='ddp' needs"),
        ({"num_nodes": 0}, "`num_nodes` must be a positive integer"),
        ({"pct_start": 1.5}, "`pct_start` must be in"),
        ({"lr_factor": 1.0}, "`lr_factor` must be in"),
        ({"lr": float("inf")}, "`lr` must be a positive number, got inf; give a finite"),
        ({"clip_norm": float("inf")}, "`clip_norm` must be a positive number, got inf"),
        ({"clip_value": -1.0}, "`clip_value` must be a positive number"),
        ({"min_lr": float("inf")}, "`min_lr` must be a finite number, got inf"),
        ({"pct_start": float("nan")}, "`pct_start` must be a finite number, got nan"),
        ({"divergence_factor": float("inf")}, "`divergence_factor` must be a number above 1"),
        ({"lr": True}, "`lr` must be a positive number, got True"),
    ],
)
def test_engine_settings_are_checked(kwargs, message):
    from seqcast.training import TrainSettings

    with pytest.raises(SeqcastError, match=message):
        TrainSettings.from_kwargs(**kwargs)


def test_auto_picks_lightning_for_what_only_it_does():
    from seqcast.training import TrainSettings

    assert TrainSettings().engine() == "lean"
    assert TrainSettings(log_dir="logs").engine() == "lightning"
    assert TrainSettings(devices=2).engine() == "lightning"
    assert TrainSettings().engine(callbacks=True) == "lightning"
    x, y = data(16)
    with pytest.raises(SeqcastError, match="`callbacks` are Lightning callbacks"):
        linear_model().fit(x, y, trainer="lean", callbacks=[object()], verbose=False)


def test_clipping_applies_at_every_step():
    x, y = data(256)
    model = linear_model()
    before = flat(model)
    model.fit(x, y * 1000, epochs=1, batch_size=32, optimizer="sgd", lr=1.0, clip_norm=1e-3,
              shuffle=False, verbose=False)  # fmt: skip
    after = flat(model)
    assert float((after - before).norm()) <= 8 * 1e-3 + 1e-6  # 8 steps of at most 1e-3


# -- the loss hook -------------------------------------------------------------------------------


@pytest.mark.parametrize("trainer", ["lean", "lightning"])
def test_a_callable_loss_is_what_training_minimises(trainer):
    x, y = data()
    calls = []

    def first_half_mse(pred, target):
        calls.append(pred.shape)
        return torch.nn.functional.mse_loss(pred[: len(pred) // 2], target[: len(target) // 2])

    def fit(loss):
        torch.manual_seed(0)
        model = linear_model()
        history = model.fit(x, y, epochs=2, loss=loss, lr=0.05, seed=0, shuffle=False,
                            verbose=False, trainer=trainer)  # fmt: skip
        return model, history

    model, history = fit(first_half_mse)
    assert calls and calls[0] == (32, 1)
    reference, _ = fit("mse")
    # a different loss, a different model; the first step of each saw the same first batch
    assert not torch.equal(flat(model), flat(reference))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(x, y)["loss"] == pytest.approx(float(first_half_mse(
        torch.as_tensor(model.predict(x)), torch.as_tensor(y))), rel=1e-5)  # fmt: skip


def test_a_callable_mse_trains_exactly_as_the_named_one():
    x, y = data()
    weights = []
    for loss in ("mse", lambda p, t: torch.nn.functional.mse_loss(p, t)):
        torch.manual_seed(0)
        model = linear_model()
        model.fit(x, y, epochs=2, loss=loss, seed=0, verbose=False)
        weights.append(flat(model))
    assert torch.equal(weights[0], weights[1])


# -- learning-rate schedules ---------------------------------------------------------------------


def _lr_by_hand(schedule: str, lr: float, epochs: int, steps: int, monitored=None, **options):
    """The learning rate at each epoch's end, the torch scheduler driven by hand."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    lr_scheduler = torch.optim.lr_scheduler
    if schedule == "onecycle":
        scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps,
                                            **options)  # fmt: skip
    elif schedule == "cosine":
        scheduler = lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps, **options)
    else:
        scheduler = lr_scheduler.ReduceLROnPlateau(optimizer, **options)
    out = []
    for epoch in range(epochs):
        if schedule == "plateau":
            out.append(optimizer.param_groups[0]["lr"])
            scheduler.step(monitored[epoch])
            continue
        for _ in range(steps):
            optimizer.step()
            scheduler.step()
        out.append(optimizer.param_groups[0]["lr"])
    return out


@pytest.mark.parametrize("trainer", ["lean", "lightning"])
@pytest.mark.parametrize(
    "schedule, options, hand_options",
    [
        ("onecycle", {"pct_start": 0.25}, {"pct_start": 0.25}),
        ("cosine", {"min_lr": 1e-4}, {"eta_min": 1e-4}),
        ("plateau", {"lr_patience": 0, "lr_factor": 0.5}, {"patience": 0, "factor": 0.5}),
    ],
)
def test_schedules_set_the_rate_as_torch_schedulers_do(trainer, schedule, options, hand_options):
    x, y = data(100)  # 4 batches of 32, 32, 32, 4
    val = data(64, seed=1)
    history = linear_model().fit(
        x, y, epochs=5, validation_data=(val[0], -val[1]), lr=0.02, schedule=schedule,
        seed=0, verbose=False, trainer=trainer, **options,
    )  # fmt: skip
    expected = _lr_by_hand(schedule, 0.02, 5, 4, history.history["val_loss"], **hand_options)
    assert history.history["lr"] == pytest.approx(expected, rel=1e-12)
    if schedule == "plateau":  # val_loss rises after the first epoch: halved from then on
        assert history.history["lr"] == pytest.approx([0.02, 0.02, 0.01, 0.005, 0.0025])


def test_onecycle_with_clipping_is_the_hand_written_torch_loop():
    # What benchmarks/handson.py's best settings ran as its own loop before fit had schedules:
    # Adam, OneCycleLR over every batch, gradient norm clipped, seeded batch order.
    x, y = data(200)
    torch.manual_seed(5)
    model = Sequential([GRU(4), Dense(1)], input_shape=(10, 1))
    reference = copy.deepcopy(model)
    model.fit(x, y, epochs=3, lr=3e-2, schedule="onecycle", clip_norm=1.0, seed=7, verbose=False,
              accelerator="cpu")  # fmt: skip

    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    opt = torch.optim.Adam(reference.parameters(), lr=3e-2, fused=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-2, total_steps=3 * 7)
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        order = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), 32):
            idx = order[i : i + 32]
            loss = torch.nn.functional.mse_loss(reference(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(reference.parameters(), 1.0)
            opt.step()
            sched.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("trainer", ["lean", "lightning"])
def test_a_schedule_with_early_stopping_stops_and_restores_the_best(trainer):
    x, y = data()
    xv, yv = data(64, seed=2)
    model = linear_model()
    history = model.fit(
        x, y, epochs=30, validation_data=(xv, -yv), early_stopping=2, lr=0.05,
        schedule="onecycle", seed=0, verbose=False, trainer=trainer,
    )  # fmt: skip
    epochs = history.epochs
    assert epochs < 30
    # the schedule spans all 30 epochs: stopping early leaves it where it was
    assert history.history["lr"] == pytest.approx(_lr_by_hand("onecycle", 0.05, 30, 8)[:epochs])
    best = min(history.history["val_loss"])
    assert model.evaluate(xv, -yv)["loss"] == pytest.approx(best, rel=1e-5)


# -- the Lightning engine ------------------------------------------------------------------------


def test_lightning_writes_a_csv_log_and_runs_user_callbacks(tmp_path):
    import lightning.pytorch as pl

    class Count(pl.Callback):
        epochs = 0

        def on_train_epoch_end(self, trainer, module):
            Count.epochs += 1

    x, y = data()
    history = linear_model().fit(
        x, y, epochs=4, validation_data=data(64, seed=1), lr=0.05, seed=0, verbose=False,
        log_dir=str(tmp_path), callbacks=[Count()],
    )  # fmt: skip
    assert Count.epochs == 4
    assert history.history["loss"][-1] < history.history["loss"][0]
    logs = list(tmp_path.glob("seqcast/version_*/metrics.csv"))
    assert len(logs) == 1
    header, *rows = logs[0].read_text().splitlines()
    assert {"loss", "val_loss", "epoch"} <= set(header.split(","))
    assert len(rows) >= 4


def test_lightning_gets_the_device_settings(monkeypatch):
    import lightning.pytorch as pl

    seen = {}
    real = pl.Trainer

    def recording(**kwargs):
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(pl, "Trainer", recording)
    x, y = data(64)
    linear_model().fit(x, y, epochs=1, trainer="lightning", accelerator="cpu", devices=1,
                       num_nodes=1, strategy="auto", verbose=False)  # fmt: skip
    assert {k: seen[k] for k in ("accelerator", "devices", "num_nodes", "strategy")} == {
        "accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"
    }  # fmt: skip
    assert seen["enable_progress_bar"] is False and seen["logger"] is False


def test_batches_give_each_process_an_equal_share_of_one_order(monkeypatch):
    from seqcast import training

    x = torch.arange(10.0)[:, None]
    shares = []
    for rank in range(3):
        # patched where `_Batches` looks it up: its own module
        monkeypatch.setattr(training.batches, "_rank_and_world", lambda rank=rank: (rank, 3))
        batches = training._Batches(x, x, 2, shuffle=True, seed=4, shard=True)
        assert len(batches) == 2  # 3 samples each, the 10th dropped
        shares.append(torch.cat([xb for xb, _ in batches]).flatten().tolist())
    assert [len(s) for s in shares] == [3, 3, 3]
    assert len(set(sum(shares, []))) == 9
    unseeded = training._Batches(x, x, 2, shuffle=True, seed=None, shard=True)
    with pytest.raises(SeqcastError, match="needs a `seed`"):
        list(unseeded)


# -- suspicions from issue 14 ------------------------------------------------------------------


def test_fused_adam_step_runs_a_hook_registered_after_the_first_step():
    """It was a bug: the hooks were looked at once, at the first step, so a hook added later
    never ran; now every step asks, and the numbers stay torch's own."""
    from seqcast.training import _FusedAdamStep

    torch.manual_seed(0)
    layers = [torch.nn.Linear(2, 1)]
    layers.append(copy.deepcopy(layers[0]))
    optimizers = [torch.optim.Adam(layer.parameters(), lr=0.1, fused=True) for layer in layers]
    step = _FusedAdamStep(optimizers[1])
    calls, now = [], {}
    for i in range(5):
        now["step"] = i
        if i == 2:
            optimizers[1].register_step_pre_hook(lambda *args: calls.append(now["step"]))
        for layer in layers:
            layer.zero_grad()
            layer(torch.full((4, 2), float(i + 1))).pow(2).sum().backward()
        optimizers[0].step()
        step()
    assert calls == [2, 3, 4]  # every step from the one it was registered before
    for a, b in zip(layers[0].parameters(), layers[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_predict_and_evaluate_take_a_model_without_parameters():
    """It was a bug: `next(model.parameters())` raised StopIteration for a fixed function."""
    from seqcast.training import evaluate_arrays, predict_arrays

    class LastValue(torch.nn.Module):
        def forward(self, x):
            return x[:, -1, :]

    x = np.arange(24, dtype=np.float64).reshape(4, 6, 1)
    out = predict_arrays(LastValue(), x, batch_size=3)
    np.testing.assert_array_equal(out, x[:, -1, :])  # exact: a copy of the inputs
    assert out.dtype == np.float64
    assert evaluate_arrays(LastValue(), x, x[:, -1, :])["loss"] == 0.0


@pytest.mark.parametrize("trainer", ["lean", "lightning"])
def test_float64_arrays_train_a_float32_model_in_float32(trainer):
    """fit_arrays casts inputs to the model's parameter dtype, as predict_arrays does: float64
    arrays train a float32 model exactly as the same arrays cast to float32 (same seed)."""
    x, y = data(64)
    settings = {"epochs": 2, "seed": 0, "verbose": False, "trainer": trainer}
    torch.manual_seed(0)
    wide = linear_model()
    narrow = copy.deepcopy(wide)
    wide.fit(x.astype(np.float64), y.astype(np.float64), validation_data=(x, y), **settings)
    narrow.fit(x, y, validation_data=(x, y), **settings)
    assert all(p.dtype == torch.float32 for p in wide.parameters())
    assert torch.equal(flat(wide), flat(narrow))  # bit for bit: the same float32 steps
