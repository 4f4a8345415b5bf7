"""Per-series scalers: parameters, round trips, fit-on-train-only, persistence, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from seqcast.data.frames import split_by_time
from seqcast.data.scalers import MinMaxScaler, StandardScaler, scaler_from_dict
from seqcast.errors import NotFittedError, SeqcastError

SCALERS = [MinMaxScaler, StandardScaler]


def frame(**series: list[float]) -> pd.DataFrame:
    ids = [sid for sid, values in series.items() for _ in values]
    return pd.DataFrame(
        {
            "unique_id": pd.Series(ids, dtype=str),
            "ds": [t for values in series.values() for t in range(len(values))],
            "y": [float(v) for values in series.values() for v in values],
        }
    )


def test_minmax_per_series_and_constant_series():
    scaled = MinMaxScaler().fit_transform(frame(a=[1, 2, 3], b=[10, 10, 10], c=[-4, 0, 4]))
    assert scaled["y"].tolist() == [0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0]
    ranged = MinMaxScaler(feature_range=(-1, 1)).fit_transform(frame(a=[1, 2, 3]))
    assert ranged["y"].tolist() == [-1.0, 0.0, 1.0]


def test_standard_per_series_and_constant_series():
    data = frame(a=[1, 2, 3, 6], b=[5, 5])
    scaler = StandardScaler().fit(data)
    scaled = scaler.transform(data)
    a = scaled["y"][:4].to_numpy()
    assert a.mean() == pytest.approx(0.0) and a.std() == pytest.approx(1.0)
    assert scaled["y"][4:].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(scaler.mean_[:, 0], [3.0, 5.0])
    np.testing.assert_allclose(scaler.scale_[:, 0], [np.std([1, 2, 3, 6]), 1.0])


def test_covariates_are_scaled_per_column():
    data = frame(a=[0, 1, 2])
    data["temp"] = [10.0, 30.0, 20.0]
    scaled = MinMaxScaler().fit_transform(data)
    assert scaled["temp"].tolist() == [0.0, 1.0, 0.5]
    assert scaled["y"].tolist() == [0.0, 0.5, 1.0]


def test_fitted_attributes_and_constructor_storage():
    scaler = MinMaxScaler(feature_range=(2, 3))
    assert scaler.feature_range == (2, 3) and not hasattr(scaler, "scale_")
    scaler.fit(frame(b=[4, 8], a=[0, 1]))
    assert scaler.ids_ == ["b", "a"] and scaler.columns_ == ["y"]
    np.testing.assert_array_equal(scaler.data_min_[:, 0], [4.0, 0.0])
    np.testing.assert_array_equal(scaler.data_max_[:, 0], [8.0, 1.0])
    assert repr(scaler) == "MinMaxScaler(feature_range=(2, 3))"


def test_nan_is_ignored_by_fit_and_kept_by_transform():
    scaled = MinMaxScaler().fit_transform(frame(a=[0, float("nan"), 4]))
    assert scaled["y"][0] == 0.0 and np.isnan(scaled["y"][1]) and scaled["y"][2] == 1.0


@pytest.mark.parametrize("cls", SCALERS)
def test_not_fitted(cls):
    name = cls.__name__
    with pytest.raises(NotFittedError, match=f"^This {name} is not fitted yet. Call `fit` first.$"):
        cls().transform(frame(a=[1, 2]))
    with pytest.raises(NotFittedError):
        cls().inverse_transform_array("a", np.ones(2))


@pytest.mark.parametrize("cls", SCALERS)
def test_unknown_series_is_named(cls):
    scaler = cls().fit(frame(a=[1, 2]))
    with pytest.raises(SeqcastError, match="series 'zz' was not seen .* 1 series: 'a'"):
        scaler.transform(frame(zz=[1, 2]))
    with pytest.raises(SeqcastError, match="'zz'"):
        scaler.inverse_transform((["a", "zz"], np.ones((2, 3))))


def test_bad_feature_range_and_bad_input():
    with pytest.raises(SeqcastError, match="min < max"):
        MinMaxScaler(feature_range=(1, 0)).fit(frame(a=[1, 2]))
    with pytest.raises(SeqcastError, match="long frame"):
        MinMaxScaler().fit(np.ones(3))
    scaler = MinMaxScaler().fit(frame(a=[1, 2]))
    with pytest.raises(SeqcastError, match="one id per row"):
        scaler.inverse_transform_array(["a"], np.ones((2, 1)))


@pytest.mark.parametrize("cls", SCALERS)
def test_array_inverse_matches_frame_inverse(cls):
    data = frame(a=[1, 5, 3, 9], b=[100, 300, 200, 50])
    scaler = cls().fit(data)
    scaled = scaler.transform(data)["y"].to_numpy().reshape(2, 4, 1)  # (batch, horizon, 1)
    back = scaler.inverse_transform((["a", "b"], scaled))
    np.testing.assert_allclose(back.reshape(-1), data["y"])
    again = scaler.transform_array(["a", "b"], back)
    np.testing.assert_allclose(again, scaled)
    one = scaler.inverse_transform_array("b", scaled[1, :, 0])  # one id for all rows
    np.testing.assert_allclose(one, [100, 300, 200, 50])


def test_torch_values_stay_tensors():
    scaler = MinMaxScaler().fit(frame(a=[0, 10]))
    out = scaler.inverse_transform_array(["a"], torch.full((1, 2, 1), 0.5, dtype=torch.float32))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.flatten().tolist() == [5.0, 5.0]


@pytest.mark.parametrize("cls", SCALERS)
def test_to_dict_is_json_and_round_trips(cls):
    data = frame(a=[1, 5, 3], b=[7, 7, 8])
    data["temp"] = [0.5, 1.5, 2.5, 3.0, 2.0, 1.0]
    scaler = cls().fit(data)
    text = json.dumps(scaler.to_dict())
    restored = cls.from_dict(json.loads(text))
    assert type(restored) is cls and restored.ids_ == scaler.ids_
    pd.testing.assert_frame_equal(restored.transform(data), scaler.transform(data))
    assert type(scaler_from_dict(json.loads(text))) is cls
    unfitted = scaler_from_dict(json.loads(json.dumps(cls().to_dict())))
    with pytest.raises(NotFittedError):
        unfitted.transform(data)


def test_from_dict_rejects_other_class_and_garbage():
    state = StandardScaler().fit(frame(a=[1, 2])).to_dict()
    with pytest.raises(SeqcastError, match="is a StandardScaler, not a MinMaxScaler"):
        MinMaxScaler.from_dict(state)
    with pytest.raises(SeqcastError, match="unknown scaler 'Pickle'"):
        scaler_from_dict({"class": "Pickle"})
    assert MinMaxScaler.from_dict(MinMaxScaler((-1, 1)).to_dict()).feature_range == (-1, 1)


# ----------------------------------------------------------------------------- properties
values = st.floats(-1e6, 1e6, allow_nan=False)
series_lists = st.lists(st.lists(values, min_size=2, max_size=20), min_size=1, max_size=4)


def multi_frame(data: list[list[float]]) -> pd.DataFrame:
    return frame(**{f"s{k}": v for k, v in enumerate(data)})


@settings(max_examples=60, deadline=None)
@given(series_lists, st.sampled_from(SCALERS))
def test_round_trip_inverse_of_transform(data, cls):
    original = multi_frame(data)
    scaler = cls().fit(original)
    back = scaler.inverse_transform(scaler.transform(original))
    np.testing.assert_allclose(back["y"], original["y"], rtol=1e-9, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(series_lists)
@example([[0.0, 5e-324]])  # a span whose reciprocal overflows: treated as constant
def test_minmax_training_data_lands_in_range(data):
    scaled = MinMaxScaler(feature_range=(-1, 1)).fit_transform(multi_frame(data))["y"]
    assert scaled.min() >= -1 - 1e-9 and scaled.max() <= 1 + 1e-9


@settings(max_examples=60, deadline=None)
@given(st.lists(values, min_size=4, max_size=30), st.integers(1, 3))
def test_test_part_is_scaled_with_training_min_max(series, horizon):
    train, test = split_by_time(frame(a=series + [2e6] * horizon), horizon)  # test exceeds train
    scaler = MinMaxScaler().fit(train)
    low, high = min(series), max(series)
    span = high - low
    with np.errstate(divide="ignore", over="ignore"):
        if not (span > 0 and np.isfinite(1.0 / span)):  # no usable span: the series is constant
            span = 1.0
    expected = (test["y"].to_numpy() - low) / span
    np.testing.assert_allclose(scaler.transform(test)["y"], expected, rtol=1e-9)
    assert scaler.data_max_[0, 0] == high  # the test values never reached the parameters
