"""The `seqcast` command: a thin shell over the Python API.

Bad input prints one line on stderr and exits 2; an internal failure exits 1. Files are
written only after all the work has succeeded, so a failed command leaves no half-written
output behind.

    entry       the Typer app and `main`, which turns errors into one line and an exit code
    options     the options shared by the commands (data columns, --quiet, --impute)
    missing     --impute: filling a command's data before it runs
    files       writing output beside its target, then moving it into place
    output      the console, tables and the training progress bar
    comparison  demo, compare
    models      fit, predict, evaluate, summary (commands on a saved model)
    imputation  impute
"""

from __future__ import annotations

from seqcast.cli import comparison, imputation, models
from seqcast.cli.entry import app, main

__all__ = ["app", "main"]

# registered here, in the order `seqcast --help` lists them
app.command()(comparison.demo)
app.command()(comparison.compare)
app.command()(models.fit)
app.command()(models.predict)
app.command()(models.evaluate)
app.command(name="impute")(imputation.impute_command)
app.command()(models.summary)
