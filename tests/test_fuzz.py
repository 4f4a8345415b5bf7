"""Fuzzed data files: every input loads (or fits) or is refused with one SeqcastError line.

The files are generated: tables in the shapes users send (separators, quoting, line endings,
encodings and byte-order marks, huge and tiny numbers, mixed types, duplicate columns, empty
and header-only files, gzip), mutated (cut short, bytes flipped), binary garbage behind
misleading magic bytes, and Parquet files under a `.csv` name or truncated. Two properties:

- `load_frame(path)` returns a long frame (`unique_id`, `ds`, `y` float64, at least one row)
  or raises SeqcastError whose message is one line; never another exception type;
- `seqcast fit <file> --model naive --horizon 2 --window 3 --out DIR` exits 0 with a model
  directory written, or exits 2 with exactly one `error:` line; never 1 or a traceback.

`benchmarks/fuzz.py` runs the same properties with many more examples.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqcast.data.frames import load_frame
from seqcast.errors import SeqcastError

JUNK_CELLS = [
    "", " ", "NA", "null", "nan", "NaN", "inf", "-inf", "1e400", "-1e400", "1e-400", "1e308",
    "-0", "0x1F", "1_000", "1,5", "1.2.3", "12a", "TRUE", "False", "2020-13-45", "2020-02-30",
    "0001-01-01", "9999-12-31", "31/12/2020", "12/31/2020", "2020-01-01T00:00:00+05:00",
    "99999999999999999999999", "-9223372036854775809", '"', '""', "a\"b", "é", "日本", "\u200b",
]  # fmt: skip
NAMES = ["ds", "y", "date", "value", "unique_id", "time", "Month", "", " y", "y", "2020", "1"]
MAGIC = [b"PAR1", b"PK\x03\x04", b"PK\x05\x06", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", b"\x1f\x8b"]
MAGIC += [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00", b"BZh", b"%PDF"]
ENCODINGS = ["utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]
EXTENSIONS = [".csv", ".csv", ".tsv", ".txt", ".csv.gz", ".parquet", ".pq"]
FIT = ["--model", "naive", "--horizon", "2", "--window", "3", "--quiet"]

cells = st.one_of(
    st.sampled_from(JUNK_CELLS),
    st.integers(-(10**25), 10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.dates().map(str),
    st.text(max_size=6),
)


def _quote(cell: str, sep: str, always: bool) -> str:
    if always or any(ch in cell for ch in (sep, '"', "\n", "\r")):
        return '"' + cell.replace('"', '""') + '"'
    return cell


@st.composite
def tables(draw) -> tuple[str, bytes]:
    """A CSV-shaped file: a mostly regular table with a few odd cells, then encoded."""
    columns = draw(
        st.one_of(
            st.sampled_from([["ds", "y"], ["unique_id", "ds", "y"], ["date", "value"], ["y"]]),
            st.lists(st.sampled_from(NAMES) | st.text(max_size=4), min_size=1, max_size=4),
        )
    )
    n = draw(st.integers(0, 24))
    start = pd.Timestamp(draw(st.dates(min_value=date(1800, 1, 1), max_value=date(2200, 1, 1))))
    step = draw(st.sampled_from(["D", "MS", "h", "int"]))
    stamps = (
        [str(i) for i in range(n)]
        if step == "int"
        else [
            str(s.date() if step != "h" else s) for s in pd.date_range(start, periods=n, freq=step)
        ]
    )
    values = draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n))
    regular = {
        "ds": stamps,
        "date": stamps,
        "time": stamps,
        "Month": stamps,
        "unique_id": ["a"] * n,
    }
    rows = [[regular.get(c, [repr(v) for v in values])[i] for c in columns] for i in range(n)]
    for _ in range(draw(st.integers(0, 3)) if n else 0):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, len(columns) - 1))
        rows[i][j] = draw(cells)
    if n and draw(st.booleans()):
        rows[draw(st.integers(0, n - 1))].append(draw(cells))  # a ragged row
    sep = draw(st.sampled_from([",", ",", ";", "\t", "|"]))
    always = draw(st.booleans())
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [sep.join(_quote(c, sep, always) for c in row) for row in [columns, *rows]]
    if draw(st.booleans()):
        lines.insert(0, f"sep={sep}")
    text = newline.join(lines) + draw(st.sampled_from(["", newline, newline * 3]))
    data = text.encode(draw(st.sampled_from(ENCODINGS)), errors="replace")
    name = "data" + draw(st.sampled_from(EXTENSIONS))
    if name.endswith(".gz") or draw(st.integers(0, 9)) == 0:
        data = gzip.compress(data)
    return name, _mutate(draw, data)


def _mutate(draw, data: bytes) -> bytes:
    """Unchanged most of the time; otherwise cut short, or a few bytes overwritten."""
    how = draw(st.sampled_from(["keep"] * 6 + ["cut", "flip"]))
    if how == "cut" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 4))):
            out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    return data


@st.composite
def binaries(draw) -> tuple[str, bytes]:
    """Garbage, often behind the magic bytes of a real format."""
    prefix = draw(st.sampled_from([b"", *MAGIC]))
    suffix = draw(st.sampled_from([b"", b"PAR1"]))
    return "data" + draw(st.sampled_from(EXTENSIONS)), prefix + draw(
        st.binary(max_size=300)
    ) + suffix


@st.composite
def parquets(draw) -> tuple[str, bytes]:
    """A Parquet file (valid, or cut short, or flipped), under a Parquet or a CSV name."""
    n = draw(st.integers(0, 20))
    frame = pd.DataFrame({"ds": pd.date_range("2000-01-01", periods=n, freq="D")})
    frame[draw(st.sampled_from(["y", "value", "ds2"]))] = draw(
        st.sampled_from([np.arange(n, dtype=float), np.array([str(i) for i in range(n)])])
    )
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    name = "data" + draw(st.sampled_from([".parquet", ".csv", ".txt"]))
    return name, _mutate(draw, buffer.getvalue())


files = st.one_of(tables(), tables(), tables(), binaries(), parquets())


def check_loader(name: str, data: bytes) -> str:
    """'loaded' or 'refused' for the file; raises AssertionError (or the stray exception)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            frame = load_frame(path)
        except SeqcastError as err:
            message = str(err)
            assert message and "\n" not in message, repr(message)
            return "refused"
    assert list(frame.columns[:3]) == ["unique_id", "ds", "y"] and len(frame) > 0
    assert frame["y"].dtype == np.float64 and not np.isinf(frame["y"]).any()
    return "loaded"


def check_cli(name: str, data: bytes) -> str:
    """'fitted' or 'refused' for `seqcast fit` on the file; AssertionError otherwise."""
    from seqcast.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / name, Path(tmp) / "model"
        path.write_bytes(data)
        stdout, stderr = io.StringIO(), io.StringIO()
        code = 0
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main(["fit", str(path), *FIT, "--out", str(out)])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
        errors = [line for line in stderr.getvalue().splitlines() if line.startswith("error:")]
        detail = f"exit {code}; stderr: {stderr.getvalue()!r}"
        assert "Traceback" not in stderr.getvalue(), detail
        if code == 0:
            assert (out / "config.json").is_file() and not errors, detail
            return "fitted"
        assert code == 2 and len(errors) == 1 and not out.exists(), detail
        return "refused"


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(files)
def test_any_file_loads_or_is_refused_with_one_line(file):
    check_loader(*file)


@settings(FUZZ, max_examples=60)
@given(files)
def test_any_file_fits_or_exits_2_with_one_line(file):
    check_cli(*file)


def test_the_generator_reaches_both_outcomes():
    """The properties above are not vacuous: regular tables load and fit, garbage is refused."""
    regular = "ds,y\n" + "".join(f"2020-01-{d:02d},{d * 1.5}\n" for d in range(1, 25))
    assert check_loader("a.csv", regular.encode()) == "loaded"
    assert check_cli("a.csv", regular.encode("utf-16")) == "fitted"
    assert check_loader("a.csv", b"PK\x03\x04" + bytes(range(256))) == "refused"
    assert check_cli("a.csv", bytes(range(256))) == "refused"
