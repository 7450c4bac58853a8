"""The figures' common ground: a bare Figure, annotated heatmaps, and saving as PNG and SVG with the same bytes
every time (matplotlib is optional: without it the functions return None and the numbers still come)."""
from __future__ import annotations

from pathlib import Path

from .. import files
from ..lottery.report import SLIDE_FONT_SIZE

DPI = 150  # the PNG's resolution: sharp on a slide, a few hundred kB at most


def new_figure(figsize: tuple[float, float], layout: str = "constrained"):
    """Returns a bare matplotlib Figure laid out by matplotlib ("compressed" for square images), or None without
    matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure(figsize=figsize, layout=layout)


def save(fig, path: str | Path) -> list[Path]:
    """Returns the paths written: the figure as `path`.png and .svg, every text at least SLIDE_FONT_SIZE points.

    The same figure gives the same bytes: the SVG carries no date and its ids come from a fixed salt.
    """
    import matplotlib
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_fontsize(max(text.get_fontsize(), SLIDE_FONT_SIZE))
    written = []
    with matplotlib.rc_context({"svg.hashsalt": "minilth"}):
        for suffix, metadata in ((".png", {}), (".svg", {"Date": None})):
            target = Path(path).with_suffix(suffix)
            with files.atomic_path(target) as temp:
                fig.savefig(temp, dpi=DPI, metadata=metadata)
            written.append(target)
    return written


def annotated_heatmap(ax, grid, vmin: float, vmax: float, cmap: str = "Blues", text: str = "{:.0f}"):
    """Draws `grid` (rows of numbers) as a heatmap with each value written in its cell; NaN is grey with "-".
    Returns the image, for a colorbar."""
    import matplotlib
    import numpy as np

    values = np.array(grid, dtype=float)
    colours = matplotlib.colormaps[cmap].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(values), vmin=vmin, vmax=vmax, aspect="auto", cmap=colours)
    for (i, j), value in np.ndenumerate(values):
        dark = np.isfinite(value) and (value - vmin) > 0.6 * (vmax - vmin)
        ax.text(j, i, "-" if not np.isfinite(value) else text.format(value), ha="center", va="center",
                color="white" if dark else "black")
    return image
