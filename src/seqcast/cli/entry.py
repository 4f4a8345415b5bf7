"""The Typer app and the console entry point: usage and data errors become one line on
stderr and exit code 2, a training run that diverged one line and exit code 3, an internal
failure one line and exit code 1."""

from __future__ import annotations

import sys

import typer
from typer.exceptions import TyperException

from seqcast.errors import SeqcastError, TrainingDivergedError

app = typer.Typer(
    name="seqcast",
    help="Forecast time series with recurrent and convolutional networks.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage and data errors -> one line on stderr, exit code 2."""
    try:
        app(args=argv, standalone_mode=False, prog_name="seqcast")
    except TrainingDivergedError as err:  # the run blew up and wrote no model: its own code
        print(f"error: {_one_line(str(err))}", file=sys.stderr)
        sys.exit(3)
    except SeqcastError as err:
        print(f"error: {_one_line(str(err))}", file=sys.stderr)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except TyperException as err:  # usage: a missing option, a value of the wrong type, ...
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        print(f"error: {_one_line(message)} (see seqcast --help)", file=sys.stderr)
        sys.exit(2)
    except Exception as err:  # an internal failure: still one line, but a distinct exit code
        print(f"internal error: {type(err).__name__}: {_one_line(str(err))}", file=sys.stderr)
        sys.exit(1)
