"""Writing a command's files: into a temporary folder beside the target first, then moved
into place, so a command that fails leaves no half-written output behind."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from seqcast.errors import SeqcastError

OUTPUT_TYPES = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet"}


def staged(target: Path) -> Path:
    """A temporary folder beside `target` whose files are moved into it by `publish`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))


def publish(staging: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for item in staging.iterdir():
        dest = target / item.name
        if dest.is_dir():
            shutil.rmtree(dest)
        item.replace(dest)
    staging.rmdir()


def output_type(path: Path) -> str:
    """'csv' or 'parquet' from the file name; anything else is refused before any work."""
    name = path.name.lower()
    kind = next((k for ext, k in OUTPUT_TYPES.items() if name.endswith(ext)), None)
    if kind is None:
        raise SeqcastError(
            f"cannot tell how to write {path}: expected a name ending in {', '.join(OUTPUT_TYPES)}"
        )
    if path.is_dir():
        raise SeqcastError(f"--out {path} is a directory; give a file name such as filled.csv")
    return kind


def write_table(frame, path: Path, kind: str) -> None:
    """Write beside `path`, then move into place: a failure leaves no half-written file."""
    staging = staged(path)
    try:
        partial = staging / path.name
        if kind == "parquet":
            frame.to_parquet(partial, index=False)
        else:
            frame.to_csv(partial, index=False)
        partial.replace(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
