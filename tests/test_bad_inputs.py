"""A table of bad inputs, command line and Python API: each ends in exit code 2 (CLI) or a
SeqcastError (API) whose message is one line naming the problem (a keyword of it is asserted)
and the fix. tests/test_cli.py holds the first 16 command-line cases; these are others.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from seqcast.compare import parse_models
from seqcast.data import frames
from seqcast.errors import SeqcastError, check_rate
from seqcast.forecast import Forecaster

FIT = ["--model", "naive", "--horizon", "2", "--window", "3", "--quiet"]


def _days(n: int, start: str = "2020-01-01", freq: str = "D") -> list[str]:
    return [str(d.date()) for d in pd.date_range(start, periods=n, freq=freq)]


def _csv(rows: list[list], header: str = "ds,y") -> str:
    return header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)


GOOD = _csv([[d, float(i)] for i, d in enumerate(_days(30))])
TWO = _csv(
    [["a", d, float(i)] for i, d in enumerate(_days(30))]
    + [["b", d, float(i)] for i, d in enumerate(_days(30))],
    "unique_id,ds,y",
)


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def _xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.csv", GOOD)
    return buffer.getvalue()


PARQUET = _parquet(pd.DataFrame({"ds": pd.date_range("2020", periods=30), "y": np.arange(30.0)}))

# name -> (file content, file name): the data files of the fit cases below
FILES: dict[str, tuple[str | bytes, str]] = {
    "binary garbage": (bytes(range(256)) * 4, "data.csv"),
    "Excel workbook named .csv": (_xlsx(), "data.csv"),
    "zip archive": (_zip(), "data.csv"),
    "Excel 97 workbook": (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64), "data.csv"),
    "truncated Parquet": (PARQUET[: len(PARQUET) // 2], "data.parquet"),
    "Parquet with a damaged body": (
        PARQUET[:4] + bytes(len(PARQUET) - 8) + PARQUET[-4:],
        "data.parquet",
    ),
    "damaged gzip": (gzip.compress(GOOD.encode())[:-12], "data.csv.gz"),
    "PDF named .csv": (b"%PDF-1.4\n" + bytes(range(256)), "data.csv"),
    "bad UTF-16 after its BOM": (b"\xff\xfe" + "ds,y\n".encode("utf-16-le") + b"\x00", "d.csv"),
    "NUL byte inside a value": (GOOD.replace("2020-01-05,4.0", "2020-01-05,4\x00.0"), "d.csv"),
    "whitespace-only file": (" \n\n \n", "data.csv"),
    "header only (tsv)": ("ds\ty\n", "data.tsv"),
    "duplicate column names": (_csv([[d, 1, 2] for d in _days(30)], "ds,y,y"), "data.csv"),
    "no header line": (
        _csv([[d, float(i)] for i, d in enumerate(_days(30))], "2019-12-31,0"),
        "d.csv",
    ),
    "every row longer than the header": (_csv([[d, 1, 2] for d in _days(30)]), "data.csv"),
    "one row longer than the header": (GOOD + "2020-02-01,1,2\n", "data.csv"),
    "unclosed quote": (GOOD.replace("2020-01-07,6.0", '2020-01-07,"6.0'), "data.csv"),
    "number too large for a float": (GOOD.replace(",6.0\n", ",1e400\n"), "data.csv"),
    "infinite value": (GOOD.replace(",6.0\n", ",-inf\n"), "data.csv"),
    "thousands separator in a quoted number": (GOOD.replace(",6.0\n", ',"1,234"\n'), "d.csv"),
    "impossible date": (GOOD.replace("2020-01-09", "2020-13-45"), "data.csv"),
    "zoned and naive stamps mixed": (
        GOOD.replace("2020-01-01,", "2020-01-01T00:00+01:00,"),
        "data.csv",
    ),
    "fractional integer stamps": (_csv([[i + 0.5 * (i == 3), i] for i in range(30)]), "d.csv"),
    "integer stamps beyond 2**53": (_csv([[i * 1e18, i] for i in range(30)]), "data.csv"),
    "boolean time column": (_csv([[bool(i % 2), i] for i in range(30)], "ds,y"), "data.csv"),
    "id missing on a row": (TWO.replace("b,2020-01-03", ",2020-01-03"), "data.csv"),
    "two date columns": (_csv([[d, d, i] for i, d in enumerate(_days(30))], "a,b,v"), "d.csv"),
    "two value columns, no y": (
        _csv([[d, i, -i] for i, d in enumerate(_days(30))], "ds,sales,price"),
        "data.csv",
    ),
    "NaN in y of one series": (TWO.replace("b,2020-01-30,29.0", "b,2020-01-30,"), "data.csv"),
    "duplicate stamps in one series": (
        TWO.replace("b,2020-01-04", "b,2020-01-03"),
        "data.csv",
    ),
    "rows out of order within a series": (
        TWO.replace("b,2020-01-04,3.0\nb,2020-01-05,4.0", "b,2020-01-05,4.0\nb,2020-01-04,3.0"),
        "data.csv",
    ),
    "irregular dates": (
        _csv([[d, i] for i, d in enumerate(_days(15) + _days(15, "2021-01-01", "MS"))]),
        "data.csv",
    ),
    "one series shorter than window + horizon": (
        _csv(
            [["a", d, i] for i, d in enumerate(_days(30))] + [["b", "2020-01-01", 1.0]],
            "unique_id,ds,y",
        ),
        "data.csv",
    ),
    "uneven integer steps": (_csv([[i * i, i] for i in range(30)]), "data.csv"),
    "unsupported extension": (GOOD, "data.json"),
    "text in every value": (_csv([[d, "pending"] for d in _days(30)]), "data.csv"),
    "history shorter than the window": (_csv([["2020-01-01", 1.0], ["2020-01-02", 2.0]]), "d.csv"),
}
FILE_KEYWORDS = {
    "binary garbage": "binary file",
    "Excel workbook named .csv": "Excel workbook",
    "zip archive": "zip archive",
    "Excel 97 workbook": "Excel 97",
    "truncated Parquet": "truncated Parquet",
    "Parquet with a damaged body": "cannot read Parquet",
    "damaged gzip": "gzip",
    "PDF named .csv": "PDF",
    "bad UTF-16 after its BOM": "byte-order mark",
    "NUL byte inside a value": "NUL byte",
    "whitespace-only file": "empty",
    "header only (tsv)": "no data rows",
    "duplicate column names": "appears 2 times",
    "no header line": "looks like data",
    "every row longer than the header": "more fields than",
    "one row longer than the header": "expected 2 fields",
    "unclosed quote": "quote",
    "number too large for a float": "1e400",
    "infinite value": "-inf",
    "thousands separator in a quoted number": "1,234",
    "impossible date": "2020-13-45",
    "zoned and naive stamps mixed": "time zone",
    "fractional integer stamps": "whole numbers",
    "integer stamps beyond 2**53": "2**53",
    "boolean time column": "booleans",
    "id missing on a row": "give every row an id",
    "two date columns": "time_col",
    "two value columns, no y": "target",
    "NaN in y of one series": "missing value",
    "duplicate stamps in one series": "duplicate time stamp",
    "rows out of order within a series": "not sorted",
    "irregular dates": "irregular",
    "one series shorter than window + horizon": "window 3 + horizon 2",
    "uneven integer steps": "uneven steps",
    "unsupported extension": "unsupported file type",
    "text in every value": "'pending'",
}


def _write(tmp: Path, case: str) -> Path:
    content, name = FILES[case]
    path = tmp / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _fit_file(case: str):
    return lambda tmp, model: ["fit", _write(tmp, case), *FIT, "--out", tmp / "o"]


def _good(tmp: Path) -> Path:
    path = tmp / "good.csv"
    path.write_text(GOOD)
    return path


def _fit(*options):
    return lambda tmp, model: ["fit", _good(tmp), *FIT, "--out", tmp / "o", *options]


def _broken_model(tmp: Path, model: Path, change) -> Path:
    import shutil

    broken = tmp / "broken"
    shutil.copytree(model, broken)
    change(broken)
    return broken


def _rewrite_config(key: str, value):
    def change(path: Path) -> None:
        config = json.loads((path / "config.json").read_text())
        config[key] = value
        (path / "config.json").write_text(json.dumps(config))

    return change


# name -> (CLI arguments from (tmp_path, fitted model dir), keyword of the one-line message)
CLI = {f"fit: {case}": (_fit_file(case), keyword) for case, keyword in FILE_KEYWORDS.items()}
CLI["fit: history shorter than the window"] = (
    _fit_file("history shorter than the window"),
    "window 3 + horizon 2",
)
CLI |= {
    "fit: data path is a directory": (
        lambda tmp, model: ["fit", tmp, *FIT, "--out", tmp / "o"],
        "is a directory",
    ),
    "fit: negative horizon": (
        lambda tmp, model: [
            "fit",
            _good(tmp),
            "--model",
            "naive",
            "--window",
            "3",
            "--horizon",
            "-3",
            "--out",
            tmp / "o",
        ],
        "--horizon must be a positive integer",
    ),  # fmt: skip
    "fit: window 0": (
        lambda tmp, model: [
            "fit",
            _good(tmp),
            "--model",
            "naive",
            "--window",
            "0",
            "--horizon",
            "2",
            "--out",
            tmp / "o",
        ],
        "--window must be a positive integer",
    ),  # fmt: skip
    "fit: window longer than the series": (
        lambda tmp, model: [
            "fit",
            _good(tmp),
            "--model",
            "naive",
            "--window",
            "300",
            "--horizon",
            "2",
            "--out",
            tmp / "o",
        ],
        "window 300",
    ),  # fmt: skip
    "fit: no --window for a network": (
        lambda tmp, model: [
            "fit",
            _good(tmp),
            "--model",
            "lstm",
            "--horizon",
            "2",
            "--out",
            tmp / "o",
        ],
        "--window is required",
    ),  # fmt: skip
    "fit: zero epochs": (_fit("--epochs", "0"), "--epochs must be a positive integer"),
    "fit: negative batch size": (_fit("--batch-size", "-8"), "--batch-size"),
    "fit: zero units": (_fit("--units", "0"), "--units"),
    "fit: zero season": (_fit("--season", "0"), "--season"),
    "fit: dropout of 1.5": (_fit("--dropout", "1.5"), "dropout"),
    "fit: learning rate 0": (_fit("--lr", "0"), "`lr` must be a positive number"),
    "fit: learning rate NaN": (_fit("--lr", "nan"), "`lr` must be a positive number"),
    "fit: infinite learning rate": (
        lambda tmp, model: [
            "fit",
            _good(tmp),
            "--model",
            "linear",
            "--window",
            "3",
            "--horizon",
            "2",
            "--epochs",
            "2",
            "--lr",
            "inf",
            "--out",
            tmp / "o",
        ],
        "lr",
    ),  # fmt: skip
    "fit: horizon not a number": (_fit("--horizon", "two"), "horizon"),
    "fit: unknown option": (_fit("--colour", "red"), "no such option"),
    "fit: unknown impute method": (_fit("--impute-method", "spline"), "--impute-method"),
    "fit: unknown time column": (_fit("--time-col", "when"), "'when'"),
    "fit: unknown id column": (_fit("--id-col", "store"), "'store'"),
    "fit: target names the date column": (
        _fit("--target", "ds", "--time-col", "y"),
        "must hold numbers",
    ),
    "fit: unknown model name": (
        lambda tmp, model: [
            "fit",
            _good(tmp),
            "--model",
            "prophet",
            "--window",
            "3",
            "--horizon",
            "2",
            "--out",
            tmp / "o",
        ],
        "unknown model 'prophet'",
    ),  # fmt: skip
    "unknown command": (lambda tmp, model: ["fitt", _good(tmp)], "no such command"),
    "predict: missing model directory": (
        lambda tmp, model: ["predict", tmp / "nowhere"],
        "nowhere",
    ),
    "predict: model path is a file": (lambda tmp, model: ["predict", _good(tmp)], "good.csv"),
    "predict: horizon 0": (lambda tmp, model: ["predict", model, "--horizon", "0"], "--horizon"),
    "predict: interval level not a number": (
        lambda tmp, model: ["predict", model, "--intervals", "eighty"],
        "eighty",
    ),
    "predict: interval level 0": (
        lambda tmp, model: ["predict", model, "--intervals", "0"],
        "whole percentage",
    ),
    "predict: history shorter than the window": (
        lambda tmp, model: ["predict", model, _write(tmp, "history shorter than the window")],
        "its window",
    ),
    "predict: history with NaN": (
        lambda tmp, model: ["predict", model, _write(tmp, "NaN in y of one series")],
        "missing value",
    ),
    "predict: config.json not JSON": (
        lambda tmp, model: [
            "predict",
            _broken_model(tmp, model, lambda p: (p / "config.json").write_text("{not json")),
        ],
        "config.json",
    ),
    "predict: config.json missing": (
        lambda tmp, model: [
            "predict",
            _broken_model(tmp, model, lambda p: (p / "config.json").unlink()),
        ],
        "config.json",
    ),
    "predict: future format_version": (
        lambda tmp, model: [
            "predict",
            _broken_model(tmp, model, _rewrite_config("format_version", 999)),
        ],
        "format",
    ),
    "evaluate: series shorter than the horizon": (
        lambda tmp, model: [
            "evaluate",
            model,
            _write(tmp, "one series shorter than window + horizon"),
        ],
        "series 'b'",
    ),  # fmt: skip
    "summary: not a model directory": (lambda tmp, model: ["summary", tmp], "model directory"),
    "impute: output is a directory": (
        lambda tmp, model: ["impute", _good(tmp), "--out", tmp],
        "expected a name ending in",
    ),
    "compare: no models": (
        lambda tmp, model: [
            "compare",
            _good(tmp),
            "--horizon",
            "2",
            "--models",
            ",",
            "--out",
            tmp / "c",
        ],
        "model",
    ),  # fmt: skip
}


def _frame(**columns) -> pd.DataFrame:
    return pd.DataFrame(columns)


def _fitted() -> Forecaster:
    return Forecaster("naive", window=3, horizon=2).fit(
        pd.DataFrame({"ds": pd.date_range("2020", periods=30), "y": np.arange(30.0)})
    )


# name -> (call that must raise SeqcastError, keyword of its message)
API = {
    "load_frame: a dict": (lambda: frames.load_frame({"y": [1, 2]}), "dict"),
    "load_frame: a 3-D array": (lambda: frames.load_frame(np.zeros((2, 2, 2))), "1-D"),
    "load_frame: ragged nested list": (lambda: frames.load_frame([[1, 2], [3]]), "equal length"),
    "load_frame: DataFrame with duplicate columns": (
        lambda: frames.load_frame(pd.DataFrame([[1, 2, 3]] * 3, columns=["ds", "y", "y"])),
        "more than once",
    ),
    "load_frame: complex target": (
        lambda: frames.load_frame(_frame(ds=[1, 2], y=[1 + 1j, 2j])),
        "complex",
    ),
    "load_frame: duration target": (
        lambda: frames.load_frame(_frame(ds=[1, 2], y=pd.to_timedelta([1, 2], unit="D"))),
        "durations",
    ),
    "load_frame: column options with an array": (
        lambda: frames.load_frame(np.arange(5.0), target="y"),
        "`target`",
    ),
    "load_frame: too few series ids": (
        lambda: frames.load_frame(np.zeros((4, 2)), series_id=["a"]),
        "series_id",
    ),
    "load_frame: empty DataFrame": (lambda: frames.load_frame(_frame(ds=[], y=[])), "no rows"),
    "load_frame: text Series": (
        lambda: frames.load_frame(pd.Series(["1", "two"])),
        "'two'",
    ),
    "load_frame: lists in the target": (
        lambda: frames.load_frame(_frame(ds=[1, 2], y=[[1], [2]])),
        "[1]",
    ),
    "load_frame: unknown covariate": (
        lambda: frames.load_frame(_frame(ds=[1, 2], y=[1.0, 2.0]), covariates=["price"]),
        "'price'",
    ),
    "Forecaster: unknown model": (
        lambda: Forecaster("lstmm", window=3, horizon=2).fit(np.arange(30.0)),
        "lstmm",
    ),
    "Forecaster: horizon 0": (
        lambda: Forecaster("naive", window=3, horizon=0).fit(np.arange(30.0)),
        "horizon",
    ),
    "Forecaster: negative window": (
        lambda: Forecaster("naive", window=-1, horizon=2).fit(np.arange(30.0)),
        "window",
    ),
    "Forecaster: NaN in y": (
        lambda: Forecaster("naive", window=3, horizon=2).fit(np.r_[np.arange(20.0), np.nan]),
        "missing value",
    ),
    "Forecaster: predict before fit": (
        lambda: Forecaster("naive", window=3, horizon=2).predict(),
        "fit",
    ),
    "Forecaster: load a missing directory": (
        lambda: Forecaster.load("/nonexistent/model"),
        "nonexistent",
    ),
    "Forecaster: predict past a direct model's horizon": (
        lambda: _fitted().predict(horizon=5),
        "horizon",
    ),
    "Forecaster: interval level 150": (lambda: _fitted().predict(intervals=[150]), "150"),
    "infer_freq: irregular dates": (
        lambda: frames.infer_freq(
            frames.load_frame(
                _frame(
                    ds=pd.to_datetime(["2020-01-01", "2020-01-02", "2020-03-01"]), y=[1.0, 2.0, 3.0]
                )
            )
        ),
        "irregular",
    ),  # fmt: skip
    "future_stamps: unknown frequency": (
        lambda: frames.future_stamps(pd.Timestamp("2020-01-01"), "fortnightly", 2),
        "unknown frequency",
    ),
    "future_stamps: zero integer step": (lambda: frames.future_stamps(5, 0, 2), "step"),
    "split_by_time: horizon as long as a series": (
        lambda: frames.split_by_time(frames.load_frame(np.arange(3.0)), 3),
        "smaller horizon",
    ),
    "check_time_order: rows out of order": (
        lambda: frames.check_time_order(
            pd.DataFrame({"unique_id": ["a", "a"], "ds": [2, 1], "y": [1.0, 2.0]})
        ),
        "not sorted",
    ),
    "check_rate: dropout 1": (lambda: check_rate("dropout", 1.0), "[0, 1)"),
    "compare: an empty model list": (lambda: parse_models(" , "), "no model names"),
}

# cases that reveal a bug in code this table does not own: (case, reason); strict xfail
KNOWN_BUGS: dict[str, str] = {}

CASES = [("cli", name) for name in CLI] + [("api", name) for name in API]


def _ids() -> list[str]:
    slug = lambda name: "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")  # noqa: E731
    return [
        f"bad-input-{i:02d}-of-{len(CASES)}-{slug(name)}" for i, (_, name) in enumerate(CASES, 1)
    ]


def _params():
    for (kind, name), case_id in zip(CASES, _ids(), strict=True):
        marks = (
            [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])] if name in KNOWN_BUGS else []
        )
        yield pytest.param(kind, name, id=case_id, marks=marks)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad-inputs") / "model"
    _fitted().save(out)
    return out


def run_cli(args: list) -> tuple[int, str]:
    """(exit code, stderr) of `seqcast ARGS`, run in this process."""
    from seqcast.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main([str(a) for a in args])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, stderr.getvalue()


def test_the_table_has_at_least_60_distinct_cases():
    assert len(CASES) >= 60 and len(set(CASES)) == len(CASES)
    print(f"{len(CASES)} bad inputs: {len(CLI)} on the command line, {len(API)} through the API")


@pytest.mark.parametrize(("kind", "name"), _params())
def test_bad_input_ends_in_one_line_naming_it(kind, name, tmp_path, model_dir):
    if kind == "cli":
        make_args, keyword = CLI[name]
        code, stderr = run_cli(make_args(tmp_path, model_dir))
        assert code == 2, f"exit {code}: {stderr!r}"
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr
        message = lines[0]
        assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()
    else:
        call, keyword = API[name]
        with pytest.raises(SeqcastError) as err:
            call()
        message = str(err.value)
        assert "\n" not in message.strip(), message
    assert keyword.lower() in message.lower(), message
    assert len(message) < 400, message
