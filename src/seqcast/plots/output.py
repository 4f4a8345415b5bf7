"""Figures to PNG: a file, or bytes to inline in a page; either way the figure is closed."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure

from seqcast.errors import SeqcastError

DPI = 120


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG at 120 dpi (parent folders are created) and close it."""
    if not isinstance(fig, Figure):
        raise SeqcastError(f"save_figure takes a matplotlib Figure, got {type(fig).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    _close(fig)
    return path


def figure_png(fig: Figure, dpi: int = DPI) -> bytes:
    """The PNG bytes of `fig` (for inlining in a page rather than writing a file); the figure
    is closed."""
    if not isinstance(fig, Figure):
        raise SeqcastError(f"figure_png takes a matplotlib Figure, got {type(fig).__name__}")
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    _close(fig)
    return buffer.getvalue()


def _close(fig: Figure) -> None:
    """Release a pyplot-managed figure; a plain Figure (as made here) is just cleared."""
    if fig.canvas.manager is not None:
        import matplotlib.pyplot as plt  # only when the caller already uses pyplot

        plt.close(fig)
    else:
        fig.clear()
