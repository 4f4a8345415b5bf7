"""Data files whose format, encoding or separator is not the plain case: read to the same
frame as the plain UTF-8 comma-separated file, or refused (see tests/test_bad_inputs.py)."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pandas as pd
import pytest

from seqcast.data.frames import load_frame

TEXT = "ds,y\n2020-01-01,1.5\n2020-01-02,-2.25\n2020-01-03,1e-300\n"
EXPECTED_Y = [1.5, -2.25, 1e-300]


def _load(tmp_path, data: bytes, name: str = "data.csv") -> pd.DataFrame:
    path = tmp_path / name
    path.write_bytes(data)
    return load_frame(path)


def _check(frame: pd.DataFrame) -> None:
    assert frame["y"].tolist() == EXPECTED_Y
    assert frame["ds"].tolist() == list(pd.date_range("2020-01-01", periods=3, freq="D"))


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_byte_order_marks_and_bomless_utf16(tmp_path, encoding):
    _check(_load(tmp_path, TEXT.encode(encoding)))


@pytest.mark.parametrize(
    "text",
    [
        TEXT.replace(",", ";"),
        TEXT.replace(",", "\t"),
        TEXT.replace(",", "|"),
        "sep=;\n" + TEXT.replace(",", ";"),
        TEXT.replace("\n", "\r\n"),
        TEXT.replace("\n", ",\n"),  # trailing separators: an empty unnamed column, dropped
        '"ds","y"\n'
        + "".join(f'"{a}","{b}"\n' for a, b in (r.split(",") for r in TEXT.split()[1:])),
    ],
    ids=["semicolon", "tab", "pipe", "excel-sep-line", "crlf", "trailing-commas", "all-quoted"],
)
def test_separators_line_endings_and_quoting(tmp_path, text):
    frame = _load(tmp_path, text.encode())
    _check(frame)
    assert list(frame.columns) == ["unique_id", "ds", "y"]


def test_decimal_commas_beside_semicolons(tmp_path):
    text = "ds;y\n2020-01-01;1,5\n2020-01-02;-2,25\n2020-01-03;0,0\n"
    assert _load(tmp_path, text.encode())["y"].tolist() == [1.5, -2.25, 0.0]


def test_windows_1252_is_read_when_not_utf8(tmp_path):
    text = "ds,y,café\n2020-01-01,1.5,a\n2020-01-02,-2.25,b\n2020-01-03,1e-300,c\n"
    _check(_load(tmp_path, text.encode("cp1252")))


def test_parquet_and_gzip_are_read_by_content_whatever_the_name(tmp_path):
    buffer = io.BytesIO()
    pd.DataFrame({"ds": pd.date_range("2020-01-01", periods=3), "y": EXPECTED_Y}).to_parquet(buffer)
    _check(_load(tmp_path, buffer.getvalue(), "data.csv"))
    _check(_load(tmp_path, gzip.compress(TEXT.encode()), "data.csv"))
    _check(_load(tmp_path, TEXT.encode(), "data.csv.gz"))  # named .gz, plain inside


def test_stamps_in_several_utc_offsets_are_put_in_utc(tmp_path):
    text = "ds,y\n2020-03-28T12:00+01:00,1\n2020-03-29T12:00+02:00,2\n2020-03-30T12:00+02:00,3\n"
    frame = _load(tmp_path, text.encode())
    assert str(frame["ds"].dt.tz) == "UTC"
    assert frame["ds"].dt.hour.tolist() == [11, 10, 10]


def test_integer_stamps_keep_every_digit():
    big = 2**62 + np.arange(3, dtype=np.int64)
    frame = load_frame(pd.DataFrame({"ds": big, "y": [1.0, 2.0, 3.0]}))
    assert frame["ds"].dtype == np.int64 and (frame["ds"].to_numpy() == big).all()
