"""Sources into raw tables: data files (format found from their bytes), Series and arrays.

A file's name says what it should hold; its first bytes say what it does. Both are read: a
Parquet file named `.csv` is read as Parquet (and logged), while an Excel workbook, a zip
archive or any other binary file is refused with a message that says what the file is and how
to turn it into a CSV. Text is decoded by its byte-order mark (UTF-8, UTF-16, UTF-32), as
UTF-16 when every other byte is NUL, as UTF-8, or, when that fails, as Windows-1252/Latin-1
(logged). The separator is the one of `,` `;` tab `|` that splits the header (`,` first;
`.tsv` means tab; an Excel `sep=;` first line is honoured). Everything that cannot become a
table raises SeqcastError naming the file, the problem and the fix; the table returned has at
least one data row and distinct column names, but its values are not checked here (see
`frames` and `columns`).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seqcast.errors import SeqcastError

__all__ = ["read_file", "as_table", "reject_table_options", "column_names"]

log = logging.getLogger(__name__)

CSV_EXT = (".csv", ".csv.gz", ".txt", ".tsv")
PARQUET_EXT = (".parquet", ".pq")
SEPARATORS = (",", ";", "\t", "|")
PARQUET_MAGIC = b"PAR1"
# leading bytes of formats that are not text tables: (magic, what it is, what to do instead)
_BINARY = (
    (b"PK\x03\x04", "a zip archive", "unzip it and load the CSV inside"),
    (b"PK\x05\x06", "an empty zip archive", "export the data as CSV"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an Excel 97-2003 workbook (.xls)", "save it as CSV"),
    (b"BZh", "a bzip2 archive", "decompress it first"),
    (b"\xfd7zXZ\x00", "an xz archive", "decompress it first"),
    (b"\x28\xb5\x2f\xfd", "a zstd archive", "decompress it first"),
    (b"%PDF", "a PDF document", "export the table as CSV"),
    (b"SQLite format 3\x00", "an SQLite database", "export the table as CSV"),
)
_BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_SEP_LINE = re.compile(r"\A\s*sep=(.)[ \t]*\r?\n", re.IGNORECASE)
_DECIMAL_COMMA = re.compile(r"(?:^|[;\t|])\s*-?\d+,\d+\s*(?=[;\t|]|$)", re.MULTILINE)
_DECIMAL_POINT = re.compile(r"\d\.\d")


# ----------------------------------------------------------------------------- files
def read_file(path: Path) -> tuple[pd.DataFrame, Callable[[int], str]]:
    """(raw table of the CSV or Parquet file at `path`, how to point at its row i)."""
    if not path.exists():
        raise SeqcastError(f"no such file: {path}")
    if path.is_dir():
        raise SeqcastError(f"{path} is a directory; expected a CSV or Parquet file")
    name = path.name.lower()
    if not name.endswith(CSV_EXT + PARQUET_EXT):
        known = ", ".join(CSV_EXT + PARQUET_EXT)
        raise SeqcastError(
            f"unsupported file type {path.suffix or '(none)'!r} for {path}; expected one of "
            f"{known} (or read it with pandas and pass the DataFrame)"
        )
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SeqcastError(
            f"cannot read {path}: {err.strerror or err}; check its permissions"
        ) from None
    if data.startswith(b"\x1f\x8b"):
        data = _gunzip(data, path)
    if not data.strip():
        raise SeqcastError(f"file {path} is empty; expected a header and data rows")
    if data.startswith(PARQUET_MAGIC):
        table, where = _read_parquet(data, path), lambda i: f"row {i} of {path.name}"
    else:
        _refuse_binary(data, path)
        table, first_line = _read_text(_decode(data, path), path)
        where = lambda i: f"line {i + first_line} of {path.name}"  # noqa: E731
    if len(table) == 0:
        raise SeqcastError(
            f"file {path} has no data rows (columns: {column_names(table.columns)}); add rows "
            "below the header"
        )
    return table, where


def _gunzip(data: bytes, path: Path) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise SeqcastError(
            f"{path} is a damaged or truncated gzip file ({_first_line(err)}); "
            "compress it again or pass the plain CSV"
        ) from None


def _read_parquet(data: bytes, path: Path) -> pd.DataFrame:
    if not path.name.lower().endswith(PARQUET_EXT):
        log.info("%s holds Parquet data (it starts with PAR1); reading it as Parquet", path)
    if len(data) < 12 or not data.endswith(PARQUET_MAGIC):
        raise SeqcastError(
            f"{path} is a truncated Parquet file ({len(data)} bytes, no closing PAR1 footer); "
            "copy or write it again in full"
        )
    try:
        table = pd.read_parquet(io.BytesIO(data))
    except Exception as err:  # pyarrow raises its own ValueError/OSError/... subclasses
        raise SeqcastError(
            f"cannot read Parquet file {path}: {type(err).__name__}: {_first_line(err)}; the "
            "file is damaged or uses a feature pandas cannot read: write it again"
        ) from None
    _release_arrow_memory()
    return table


def _release_arrow_memory() -> None:
    """Hand the memory Arrow freed while decoding back to the system: its allocator keeps it
    otherwise (about 1.5x the table's size for a large file), for the rest of the process."""
    try:
        import pyarrow
    except ImportError:  # read by another engine
        return
    pyarrow.default_memory_pool().release_unused()


def _refuse_binary(data: bytes, path: Path) -> None:
    for magic, what, fix in _BINARY:
        if data.startswith(magic):
            if magic.startswith(b"PK") and _is_workbook(data):
                what, fix = "an Excel workbook (.xlsx)", "save the sheet as CSV"
            raise SeqcastError(
                f"{path} is {what}, not a CSV or Parquet file; {fix} "
                "(or read it with pandas and pass the DataFrame)"
            )


def _is_workbook(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(n.startswith("xl/") for n in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return b"xl/" in data[:4096]


def _decode(data: bytes, path: Path) -> str:
    """The file's text: by its byte-order mark, else UTF-8, else Windows-1252/Latin-1."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError as err:
                raise SeqcastError(
                    f"{path} starts with a {encoding.upper()} byte-order mark but byte "
                    f"{err.start} is not {encoding.upper()}; save it again as UTF-8"
                ) from None
            return _text_or_refuse(text.lstrip("\ufeff"), path)
    unmarked = _utf16_without_bom(data[:512])
    if unmarked:
        try:
            return _text_or_refuse(data.decode(unmarked), path)
        except UnicodeDecodeError:
            pass  # refused as binary below
    try:
        return _text_or_refuse(data.decode("utf-8"), path)
    except UnicodeDecodeError as err:
        bad = err.start
    _text_or_refuse(data[:65536].decode("latin-1"), path)  # binary is refused, not guessed at
    for encoding in ("cp1252", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        log.warning(
            "%s is not UTF-8 (byte %d is 0x%02x); read it as %s", path, bad, data[bad], encoding
        )
        return _text_or_refuse(text, path)
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' for ASCII-range text saved as UTF-16 with no mark (every
    other byte NUL), else None."""
    if len(head) < 4 or len(head) % 2:
        head = head[: len(head) - len(head) % 2]
    if len(head) < 4:
        return None
    even, odd = head[0::2], head[1::2]
    if odd.count(0) == len(odd) and even.count(0) == 0:
        return "utf-16-le"
    if even.count(0) == len(even) and odd.count(0) == 0:
        return "utf-16-be"
    return None


def _text_or_refuse(text: str, path: Path) -> str:
    """`text`, unless it holds NUL characters or is mostly control characters: a binary file
    (pandas would cut values at a NUL byte without a word)."""
    head = text[:65536]
    nul = text.find("\x00")
    if nul >= 0 or len(_CONTROL.findall(head)) > max(2, len(head) // 20):
        where = f" (a NUL byte at character {nul})" if nul >= 0 else ""
        raise SeqcastError(
            f"{path} looks like a binary file, not CSV text{where}; export the data as a "
            "UTF-8 CSV or a Parquet file"
        )
    return text


def _read_text(text: str, path: Path) -> tuple[pd.DataFrame, int]:
    """(table, line number of its first data row) of CSV `text`."""
    first_line = 2
    declared = _SEP_LINE.match(text)
    if declared:  # Excel's "sep=;" first line
        text, first_line = text[declared.end() :], 3
    lines = text.lstrip("\r\n").splitlines()
    if not lines:
        raise SeqcastError(f"file {path} is empty; expected a header and data rows")
    first_line += len(text.splitlines()) - len(lines)
    sep = declared.group(1) if declared else _separator(lines[0], path)
    header = _header(lines[0], sep, path)
    sample = "\n".join(lines[1:50])
    decimal = "," if sep != "," and _decimal_comma(sample) else "."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(
                io.StringIO(text), sep=sep, decimal=decimal, index_col=False, low_memory=False
            )
    except pd.errors.EmptyDataError:
        raise SeqcastError(f"file {path} is empty; expected a header and data rows") from None
    except pd.errors.ParserWarning as err:
        raise SeqcastError(
            f"{path}: rows have more fields than the {len(header)} columns of the header "
            f"({_first_line(err)}); add the missing column names or remove the extra fields"
        ) from None
    except (ValueError, csv.Error, OverflowError, MemoryError) as err:
        raise SeqcastError(
            f"cannot parse {path} as CSV with separator {sep!r}: {_first_line(err)}; check that "
            "line's separators and quotes (a field holding the separator must be in double "
            "quotes)"
        ) from None
    blank = [c for c, h in zip(table.columns, header, strict=False) if not h.strip()]
    empty = [c for c in blank if table[c].isna().all()]  # trailing separators: no column
    return table.drop(columns=empty), first_line


def _separator(header: str, path: Path) -> str:
    if path.name.lower().endswith(".tsv"):
        return "\t"
    counts = {sep: len(_fields(header, sep)) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda sep: counts[sep])  # ties: the earlier, "," first
    if counts[","] > 1 or counts[best] == 1:
        return ","
    log.info("%s: the header is split by %r, not ','; reading with separator %r", path, best, best)
    return best


def _fields(line: str, sep: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=sep), [])
    except csv.Error:
        return line.split(sep)


def _header(line: str, sep: str, path: Path) -> list[str]:
    """The header's names, refused when two are the same or all of them look like data."""
    names = _fields(line, sep)
    seen: dict[str, int] = {}
    for name in names:
        seen[name.strip()] = seen.get(name.strip(), 0) + 1
    twice = [n for n, k in seen.items() if k > 1 and n]
    if twice:
        raise SeqcastError(
            f"column {twice[0]!r} appears {seen[twice[0]]} times in the header of {path}; "
            "give every column a distinct name"
        )
    if names and all(_looks_like_value(n) for n in names):
        raise SeqcastError(
            f"the first line of {path} ({line[:60]!r}) looks like data, not column names; add "
            "a header line such as 'ds,y'"
        )
    return names


def _looks_like_value(name: str) -> bool:
    name = name.strip()
    if not name or not any(ch.isdigit() for ch in name):
        return False
    try:
        float(name)
        return True
    except ValueError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return not pd.isna(pd.to_datetime(name, errors="coerce"))
        except (ValueError, TypeError, OverflowError):
            return False


def _decimal_comma(sample: str) -> bool:
    return bool(_DECIMAL_COMMA.search(sample)) and not _DECIMAL_POINT.search(sample)


# ----------------------------------------------------------------------------- in memory
def reject_table_options(source: Any, **options: Any) -> None:
    given = [name for name, value in options.items() if value is not None]
    if given:
        raise SeqcastError(
            f"{', '.join(f'`{g}`' for g in given)} name columns of a table, but the source is a "
            f"{type(source).__name__} with no columns; drop those arguments or pass a DataFrame"
        )


def as_table(source: Any, series_id: Any) -> tuple[pd.DataFrame, Callable[[int], str]]:
    """A Series or array as a table `frames` reads: dates (if any) in `ds`, values in `y`,
    and for a 2-D array one `unique_id` per column; plus how to point at a bad value."""
    if isinstance(source, pd.Series):
        index = source.index
        if isinstance(index, pd.PeriodIndex):
            index = index.to_timestamp()
        table = pd.DataFrame({"y": source.to_numpy()})
        if isinstance(index, pd.DatetimeIndex):
            table.insert(0, "ds", index)
        return _nonempty(table, "Series"), lambda i: f"position {i}"
    if not isinstance(source, np.ndarray | list | tuple) and not hasattr(source, "__array__"):
        raise SeqcastError(
            f"cannot read time series from a {type(source).__name__}; expected a CSV/Parquet "
            "path, a pandas DataFrame or Series, or a numpy array"
        )
    try:
        values = np.asarray(source)
    except (ValueError, TypeError) as err:
        raise SeqcastError(
            f"cannot read the {type(source).__name__} as an array ({_first_line(err)}); give "
            "one value per time step, and rows of equal length for several series"
        ) from None
    if values.ndim not in (1, 2):
        raise SeqcastError(
            f"expected a 1-D array (time,) or a 2-D array (time, n_series), got shape "
            f"{values.shape}"
        )
    if values.ndim == 1:
        return _nonempty(pd.DataFrame({"y": values}), "array"), lambda i: f"position {i}"
    n_time, n_series = values.shape
    ids = np.repeat(_array_ids(series_id, n_series), n_time)
    table = pd.DataFrame({"unique_id": ids, "y": values.T.reshape(-1)})  # column by column
    return _nonempty(table, "array"), lambda i: f"row {i % n_time}, column {i // n_time}"


def _nonempty(table: pd.DataFrame, kind: str) -> pd.DataFrame:
    if len(table) == 0:
        raise SeqcastError(f"the {kind} is empty; expected at least one value")
    return table


def _array_ids(series_id: Any, n_series: int) -> list[str]:
    if series_id is None:
        return [f"series_{j}" for j in range(n_series)]
    ids = [str(series_id)] if isinstance(series_id, str) else [str(s) for s in series_id]
    if len(ids) != n_series or len(set(ids)) != n_series:
        raise SeqcastError(
            f"`series_id` gives {len(ids)} name(s) {ids} for {n_series} series (array columns); "
            "give one distinct name per column"
        )
    return ids


# ----------------------------------------------------------------------------- helpers
def column_names(columns: Any) -> str:
    return ", ".join(repr(str(c)) for c in columns)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
