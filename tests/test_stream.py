"""Training windows streamed from Parquet parts (seqcast.data.stream, seqcast.stream_fit):
the same windows and scaling as the in-memory pipeline, a bounded sample per series an
epoch, seeded epochs, sharding by part, and refusals that name the problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("pyarrow")

from seqcast import Forecaster, strategies  # noqa: E402
from seqcast.data import stream  # noqa: E402
from seqcast.data.preprocess import WindowPipeline, split_windows  # noqa: E402
from seqcast.data.stream import ParquetSource, WindowStream  # noqa: E402
from seqcast.errors import SeqcastError  # noqa: E402

WINDOW, STEPS = 8, 3


def _series(first: int, count: int, rng: np.random.Generator) -> pd.DataFrame:
    parts = []
    for s in range(first, first + count):
        n = int(rng.integers(20, 40))
        t = np.arange(n)
        y = 5.0 * (s % 4) + 2 * np.sin(2 * np.pi * t / 6) + 0.1 * rng.standard_normal(n)
        parts.append(pd.DataFrame({"unique_id": f"s{s:03d}", "ds": t, "y": y}))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture()
def parts(tmp_path):
    """Three parts of 6 series each (ids in sorted ranges), and the whole frame."""
    rng = np.random.default_rng(1)
    frames = [_series(6 * p, 6, rng) for p in range(3)]
    for p, frame in enumerate(frames):
        frame.to_parquet(tmp_path / f"part-{p}.parquet", index=False)
    return tmp_path, pd.concat(frames, ignore_index=True)


def _stream(path, pipeline, **kw):
    options = {"batch_size": 16, "windows_per_series": 1000, "validation_size": 0.2} | kw
    return WindowStream(ParquetSource(path), pipeline, STEPS, **options)


def test_streamed_windows_are_the_in_memory_windows(parts):
    path, whole = parts
    pipeline = WindowPipeline(WINDOW).fit(whole)
    x, y, series, starts = pipeline.training_windows(whole, STEPS, "direct", np.float32)
    lengths = whole.groupby("unique_id", sort=False).size().to_numpy()
    train, _ = split_windows(series, starts, lengths, WINDOW, STEPS, False, 0.2)
    y = strategies.training_targets(y, "direct", None, WINDOW)
    batches = list(_stream(path, pipeline, shuffle=False))
    xs = torch.cat([b[0] for b in batches]).numpy()
    ys = torch.cat([b[1] for b in batches]).numpy()
    # every window of every series, scaled per series and level-shifted: same float32 ops
    np.testing.assert_allclose(xs, x[train], rtol=0, atol=1e-6)
    np.testing.assert_allclose(ys, y[train], rtol=0, atol=1e-6)
    assert all(len(b[0]) == 16 for b in batches[:-1])  # batches run on across parts


def test_an_epoch_draws_a_bounded_number_of_windows_per_series(parts):
    path, whole = parts
    batches = _stream(path, WindowPipeline(WINDOW).fit(whole), windows_per_series=2)
    n_series = whole["unique_id"].nunique()
    sizes = [len(xb) for xb, _ in batches]
    assert sum(sizes) == 2 * n_series  # every series has more than 2 training windows
    assert len(sizes) == len(batches) == -(-2 * n_series // 16)
    assert batches.windows_seen == 2 * n_series


def test_epochs_are_seeded_and_differ(parts):
    path, whole = parts
    pipeline = WindowPipeline(WINDOW).fit(whole)
    a, b = _stream(path, pipeline, seed=3), _stream(path, pipeline, seed=3)
    first_a, first_b = [x for x, _ in a], [x for x, _ in b]
    for u, v in zip(first_a, first_b, strict=True):
        assert torch.equal(u, v)
    second_a = [x for x, _ in a]
    assert not torch.equal(torch.cat(first_a), torch.cat(second_a))
    state = a.generator.get_state()  # the generator's state fixes an epoch, as for _Batches
    third = [x for x, _ in a]
    a.generator.set_state(state)
    assert torch.equal(torch.cat(third), torch.cat([x for x, _ in a]))


def test_parts_are_sharded_across_processes(parts, monkeypatch):
    path, whole = parts
    pipeline = WindowPipeline(WINDOW).fit(whole)
    seen, counts = [], []
    for rank in (0, 1):
        monkeypatch.setattr(stream, "_rank_and_world", lambda rank=rank: (rank, 2))
        batches = _stream(path, pipeline, shuffle=False, batch_size=4)
        out = list(batches)
        counts.append(len(out))
        assert len(out) == len(batches)
        seen.append(torch.cat([x for x, _ in out]))
    assert counts[0] == counts[1]  # the same number of steps on every process
    monkeypatch.setattr(stream, "_rank_and_world", lambda: (0, 1))
    every = torch.cat([x for x, _ in _stream(path, pipeline, shuffle=False, batch_size=4)])
    # rank 0 holds parts 0 and 2, rank 1 part 1; each rank's share is truncated to the
    # smaller count, so together they hold a subset of all windows and no window twice
    shared = torch.cat(seen)
    assert len(shared) <= len(every)
    rows = {tuple(r.flatten().tolist()) for r in every}
    assert all(tuple(r.flatten().tolist()) in rows for r in shared)
    assert len({tuple(r.flatten().tolist()) for r in shared}) == len(shared)


def test_a_series_in_two_parts_is_refused(parts):
    path, whole = parts
    whole[whole["unique_id"] == "s002"].to_parquet(path / "part-9.parquet", index=False)
    with pytest.raises(SeqcastError, match=r"series 's002' is in two Parquet parts .*part-0"):
        ParquetSource(path).layout()


def test_bad_sources_are_refused(parts, tmp_path_factory):
    path, whole = parts
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(SeqcastError, match="holds no .parquet files"):
        ParquetSource(empty)
    with pytest.raises(SeqcastError, match=r"lacks column\(s\) \['store'\]"):
        ParquetSource(path, id_col="store")
    with pytest.raises(SeqcastError, match="at least window \\+ horizon = 50"):
        WindowStream(ParquetSource(path), WindowPipeline(45).fit(whole), 5, 16)


def test_forecaster_fits_from_a_directory_and_forecasts_others(parts, tmp_path_factory):
    path, whole = parts
    fc = Forecaster("lstm", window=WINDOW, horizon=STEPS, epochs=15, batch_size=16, lr=0.01)
    fc.fit(path, windows_per_series=8)
    losses = fc.history_.history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    lengths = whole.groupby("unique_id").size().to_numpy()
    train_windows = np.floor(lengths * 0.8).astype(int) - WINDOW - STEPS + 1  # validation 0.2
    assert fc.windows_seen_ == 15 * np.minimum(train_windows, 8).sum()
    unseen = _series(100, 5, np.random.default_rng(7))
    pred = fc.predict(unseen, intervals=[80])
    assert len(pred) == 5 * STEPS and np.isfinite(pred["y_hat"]).all()
    saved = fc.save(tmp_path_factory.mktemp("model") / "m")
    pd.testing.assert_frame_equal(Forecaster.load(saved).predict(unseen, intervals=[80]), pred)
    with pytest.raises(SeqcastError, match="unknown option"):
        Forecaster("lstm", window=WINDOW, horizon=STEPS).fit(path, sep=";")


def test_a_diverged_streamed_fit_leaves_the_forecaster_unfitted(parts):
    from seqcast.errors import NotFittedError, TrainingDivergedError

    path, whole = parts
    fc = Forecaster("lstm", window=WINDOW, horizon=STEPS, epochs=1, batch_size=16, lr=0.01)
    fc.fit(path, windows_per_series=4)
    assert fc.predict(whole).shape[0] == whole["unique_id"].nunique() * STEPS
    fc.lr = 10000  # a refit that diverges drops the model fitted before, as in memory
    with pytest.raises(TrainingDivergedError):
        fc.fit(path, windows_per_series=4)
    assert "model_" not in vars(fc)
    with pytest.raises(NotFittedError, match="not fitted"):
        fc.predict(whole)


def test_a_streamed_fit_measures_mc_dropout_coverage_on_held_out_ends(parts):
    """`mc_coverage_` as the in-memory fit sets it: None for conformal intervals; for
    MC dropout, the coverage at each level on the held-out windows of the calibration
    sample, checked at 80 % against the share of those windows' targets inside the 10th to
    90th percentile of the model's own dropout draws (np.quantile; other draws than the fit's,
    so within 15 points)."""
    from seqcast import scoring, uncertainty

    path, whole = parts
    options = dict(window=WINDOW, horizon=STEPS, epochs=3, batch_size=16, lr=0.01)
    assert Forecaster("lstm", **options).fit(path).mc_coverage_ is None
    fc = Forecaster("lstm", dropout=0.3, interval_method="mc_dropout", mc_samples=200, **options)
    fc.fit(path, windows_per_series=8)
    coverage = np.asarray(fc.mc_coverage_)
    assert coverage.shape == (99,) and (np.diff(coverage) >= 0).all()
    assert 0 <= coverage[0] and coverage[-1] <= 100
    first = pd.read_parquet(path / "part-0.parquet")  # the calibration sample: its 6 series
    kind, x, y = scoring.calibration_windows(fc, first)
    assert kind == "held-out"
    x = torch.as_tensor(x, dtype=torch.float32)
    torch.manual_seed(5)
    with uncertainty.dropout_active(fc.model_), torch.no_grad():
        draws = torch.stack([fc.model_(x) for _ in range(200)]).double().numpy()
    lo, hi = np.quantile(draws, [0.1, 0.9], axis=0)
    inside = 100 * ((lo <= y) & (y <= hi)).mean()
    assert abs(coverage[80 - 1] - inside) < 15, (coverage[80 - 1], inside)
    with pytest.warns(uncertainty.UndercoverageWarning):  # it covers less than 80 %
        pred = fc.predict(first, intervals=[80])
    assert (pred["y_lo_80"] <= pred["y_hat"]).all() and (pred["y_hat"] <= pred["y_hi_80"]).all()


def test_a_stream_takes_no_checkpoints(parts, tmp_path_factory):
    from seqcast import training

    path, whole = parts
    fc = Forecaster("lstm", window=WINDOW, horizon=STEPS, epochs=1)
    directory = str(tmp_path_factory.mktemp("ckpt"))
    fc.train_options = dict(checkpoint_dir=directory)
    with pytest.raises(SeqcastError, match="drop checkpoint_dir when training from Parquet"):
        fc.fit(path)
    batches = _stream(path, WindowPipeline(WINDOW).fit(whole))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(WINDOW, STEPS))
    settings = training.TrainSettings.from_kwargs(epochs=1, checkpoint_dir=directory)
    with pytest.raises(SeqcastError, match="drop checkpoint_dir when training from Parquet"):
        training.fit_arrays(model, batches, None, settings)
