"""--impute and --impute-method: a command's data with its missing values filled first."""

from __future__ import annotations

from seqcast.cli.output import count, out
from seqcast.errors import check_choice


def impute_method(impute: bool, method: str | None) -> str | None:
    """The imputation method asked for on the command line, or None for no imputation."""
    from seqcast.impute import METHODS

    if method is not None:
        check_choice("--impute-method", method, METHODS)
        return method
    return "auto" if impute else None


def gaps_filled(data, load_options, method, seed, scored=None):
    """(data, load_options) for the command: as given when `method` is None; otherwise the
    long frame with its missing values filled by `seqcast.impute`, after one line saying how
    many were filled and how. `scored` (points at the end of each series that get scored)
    adds a note when some of them are imputed values rather than observations."""
    if method is None:
        return data, load_options
    from seqcast.data.frames import load_frame
    from seqcast.impute import impute

    frame = load_frame(data, **load_options)
    if not frame["y"].isna().any():
        out.print("--impute: no missing values, nothing to fill")
        return frame, {}
    missing = frame["y"].isna().to_numpy()
    by_rnn = by_linear = 0
    if scored:
        # fill the part that trains from itself alone, so no held-out value leaks into it;
        # then whatever is missing among the held-out points, from everything before them
        from_end = frame.groupby("unique_id", sort=False).cumcount(ascending=False).to_numpy()
        head = frame[from_end >= scored]
        if head["y"].isna().any():
            first = impute(head, method=method, seed=seed)
            by_rnn, by_linear = first.report["filled_rnn"], first.report["filled_linear"]
            frame = frame.copy()
            frame.loc[from_end >= scored, "y"] = first.frame["y"].to_numpy()
    result = impute(frame, method=method, seed=seed)
    r = result.report
    filled = result.frame.assign(imputed=missing)
    n_filled = int((missing & filled["y"].notna().to_numpy()).sum())
    out.print(
        f"--impute: filled {n_filled} missing value{'s' * (n_filled != 1)} in "
        f"{count(int(filled.loc[missing, 'unique_id'].nunique()), 'series', 'series')} "
        f"({by_rnn + r['filled_rnn']} by the RNN, {by_linear + r['filled_linear']} by linear "
        "interpolation; `seqcast impute` shows the choice per series)"
    )
    if scored:
        _note_scored_imputations(filled, scored)
    return filled.drop(columns="imputed"), {}


def _note_scored_imputations(filled, scored: int) -> None:
    """Say so when values that get scored (the last `scored` of a series) were imputed."""
    from_end = filled.groupby("unique_id", sort=False).cumcount(ascending=False)
    held_out = filled["imputed"][from_end.to_numpy() < scored]
    if held_out.any():
        out.print(
            f"note: {int(held_out.sum())} of the {len(held_out)} held-out values scored below "
            "are imputed, not observed; their errors measure agreement with the imputation"
        )
