"""`Forecaster.fit` on data larger than memory: a directory of long-format Parquet parts (or a
`seqcast.data.stream.ParquetSource`) trains a network from windows streamed per batch
(`WindowStream`), one part in memory at a time.

What differs from a fit on a frame, and why:
- each epoch draws up to `windows_per_series` training windows from every series (default
  32) instead of taking all of them, so an epoch's cost is bounded by the number of series;
- no validation batches and no early stopping: the model trains for `epochs` epochs;
- the frequency, and the held-out windows that calibrate conformal intervals (and measure
  MC-dropout coverage, `mc_coverage_`), come from the first `CALIBRATION_SERIES` series of
  the first part alone (a bounded sample);
- on several processes (`train_options=dict(devices=2, strategy="ddp")`, Lightning) each
  process streams only its own parts (part `i` to rank `i % world`), all run the same number
  of steps and end with the same weights; `windows_seen_` counts this process' windows;
- the model keeps no context (no training series' ends): `predict` needs the history to
  forecast from, which `seqcast.distributed.predict_parts` reads part by part.
As in memory, the Forecaster holds the new model, pipeline and calibration only once training
has succeeded: a run that raises (a diverged loss, say) leaves it unfitted.
Scaling is the same as in memory: each series by its own training rows, so a series
forecast from the history it was trained on is scaled exactly as in training.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pandas as pd

from seqcast import scoring, training
from seqcast.data import frames
from seqcast.data.preprocess import WindowPipeline
from seqcast.data.stream import ParquetSource, WindowStream
from seqcast.errors import SeqcastError

if TYPE_CHECKING:
    from seqcast.forecast import Forecaster

SOURCE_OPTIONS = ("id_col", "time_col", "target")
#: the series of the first part whose held-out ends calibrate conformal intervals: a bounded
#: sample, so calibration costs the same whatever the size of the data
CALIBRATION_SERIES = 256


def fit(fc: Forecaster, data: Any, start: float, **options: Any) -> Forecaster:
    """Train `fc` (a network, not "auto") from Parquet parts; `options`: the column names of
    `ParquetSource` (`id_col`, `time_col`, `target`) and `windows_per_series`."""
    per_series = options.pop("windows_per_series", 32)
    unknown = set(options) - set(SOURCE_OPTIONS)
    if unknown:
        raise SeqcastError(
            f"unknown option(s) {sorted(unknown)} for training from Parquet parts; "
            f"expected {', '.join(SOURCE_OPTIONS)} or windows_per_series"
        )
    from seqcast import forecast  # imports this module

    if fc.model_name == "auto":
        raise SeqcastError(
            "model='auto' fits statistical models on whole series in memory; train a network "
            "(e.g. 'lstm') from Parquet parts, or load the data into a frame first"
        )
    if fc.normalize == "auto":
        raise SeqcastError(
            "normalize='auto' fits each series' transform on its whole training part in "
            "memory; use normalize=None to train from Parquet parts, or load a frame first"
        )
    source = data if isinstance(data, ParquetSource) else ParquetSource(
        data, covariates=fc._covariates, **options
    )  # fmt: skip
    spec = fc._spec(n_features=1 + len(fc._covariates))
    if spec.strategy == "seq2seq":
        raise SeqcastError(
            "strategy='seq2seq' is not streamed from Parquet; use 'direct' or 'recursive'"
        )
    steps = 1 if spec.strategy == "recursive" else spec.horizon
    settings = fc._settings()
    if settings.checkpoint_dir is not None:  # before any part is read
        raise SeqcastError(
            "checkpoints fingerprint in-memory training data; drop checkpoint_dir when "
            "training from Parquet parts"
        )
    first = source.read(0)  # its first series: frequency and conformal calibration
    sample = first[pd.factorize(first["unique_id"])[0] < CALIBRATION_SERIES]
    frames.check_no_missing(sample, what="training")
    freq = frames.infer_freq(sample)
    pipeline = WindowPipeline(fc.window, fc.scaler, fc.local_level, fc._covariates).fit(sample)
    model = fc._build(spec)
    stream = WindowStream(
        source, pipeline, steps, settings.batch_size, per_series, fc.validation_size,
        settings.seed, settings.shuffle, forecast._param_dtype(model),
    )  # fmt: skip
    history = None
    if any(p.requires_grad for p in model.parameters()):
        history = training.fit_arrays(model, stream, None, settings, **fc._hooks)
    # trained: only now does the Forecaster hold a model (a fit that raised holds none)
    fc.auto_, fc.history_, fc.freq_ = None, history, freq
    fc.strategy_, fc.pipeline_, fc.model_ = spec.strategy, pipeline, model.eval()
    fc.windows_seen_ = stream.windows_seen  # this process' windows, under DDP
    fc.calibration_, errors = scoring.calibration_errors(fc, sample)
    fc.conformal_ = (len(errors), scoring.conformal_table(errors))
    fc.mc_coverage_ = forecast._mc_coverage(fc, sample)  # the held-out ends of the sample
    fc.context_ = None
    fc.context_scaling_ = None
    fc.fit_seconds_ = time.perf_counter() - start
    return fc
