"""What the commands print: the console, tables of frames and the training progress bar."""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.table import Table

out = Console()
if not out.is_terminal:  # pipes and CI logs: wide enough that leaderboard columns stay whole
    out = Console(width=140)


def table(frame, title: str | None = None, digits: int = 3) -> Table:
    """A rich table of `frame`: text columns left, numbers right, floats to `digits`."""
    result = Table(title=title)
    for col in frame.columns:
        result.add_column(str(col), justify="left" if frame[col].dtype == object else "right")
    for row in frame.itertuples(index=False):
        result.add_row(*[f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row])
    return result


def count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@contextlib.contextmanager
def epoch_bar(hidden: bool, epochs: int):
    """A progress bar on stderr fed by the training loop's on_epoch_end hook (None: hidden).
    It appears with the first finished epoch, so input refused before training prints only
    its one error line; early stopping may end it before the last epoch."""
    if hidden:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
               "{task.total} epochs"), TimeElapsedColumn())  # fmt: skip
    bar = Progress(*columns, console=Console(stderr=True))
    task = None

    def on_epoch_end(epoch: int, values: dict[str, float]) -> None:
        nonlocal task
        if task is None:
            bar.start()
            task = bar.add_task("training", total=epochs)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in values.items() if k != "lr")
        bar.update(task, completed=epoch + 1, description=shown)

    try:
        yield on_epoch_end
    finally:
        if task is not None:  # a bar never started would still print an empty line
            bar.stop()


@contextlib.contextmanager
def member_bars(hidden: bool):
    """Progress bars on stderr for model="auto", one per member as it runs (series fitted for
    statistical members, epochs for networks), fed by `Forecaster.fit(on_progress=...)`."""
    if hidden:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=Console(stderr=True))  # fmt: skip
    tasks: dict[str, int] = {}

    def on_progress(member: str, done: int, total: int) -> None:
        if not tasks:
            bar.start()
        if member not in tasks:
            tasks[member] = bar.add_task(member, total=total)
        bar.update(tasks[member], completed=done, total=total)

    try:
        yield on_progress
    finally:
        if tasks:
            bar.stop()
