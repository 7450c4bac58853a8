"""The paper's tables and plots: Table 2 (a ticket against its controls) and the transfer heatmap.

    rows = table2(results, task="mrpc", sparsity=0.5)    # results: {setting: [metrics per seed]}
    print(format_table2(rows))                          # mean ± std [min, max] of every metric
    transfer_heatmap(matrix, sources, targets, "transfer.png", baseline=dense)

Numbers are shown as the paper shows them: GLUE and MLM metrics (fractions in minilth) in
percent, SQuAD's (already percent) as they are. matplotlib is optional and imported only to
plot; without it every table is still written and printed. Every figure is written as a PNG and
an SVG beside it (fonts of at least 11 points: readable on a slide); `save_figure(fig, "x.pdf")`
writes any other format.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

from .. import files
from ..data.tasks import Task, get_task

# The order and names of Table 2's rows.
SETTING_LABELS = {
    "dense": "Full model (dense)",
    "imp": "IMP",
    "random_pruning": "Random pruning",
    "random_pruning_layerwise": "Random pruning (layer-wise)",
    "random_reinit": "Random re-init (shuffled)",
    "random_reinit_fresh": "Random re-init (fresh)",
    "standard_pruning": "Standard pruning",
    "oneshot": "One-shot pruning of theta_0",
}


def percent_scale(task: Task | str) -> float:
    """Returns the factor that puts the task's metrics in percent: 100 for fractions, 1 for SQuAD (already %)."""
    return 1.0 if get_task(task).kind == "span" else 100.0


def describe(values: list[float]) -> dict:
    """Returns {"mean", "std", "min", "max", "n"} of a list (std is the sample std; 0 for one value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


# --- Table 2 -----------------------------------------------------------------------------------------


def table2(results: dict[str, list[dict]], task: Task | str, sparsity: float | None = None) -> list[dict]:
    """Returns Table 2's rows: one per setting, with mean/std/min/max (in percent) of each of the task's metrics.

    `results` maps a setting ("dense", "imp", "random_pruning", ...) to its per-seed metric
    dicts. Settings come out in the paper's order; a setting with no results is left out.
    """
    task = get_task(task)
    scale = percent_scale(task)
    order = [s for s in SETTING_LABELS if s in results] + [s for s in results if s not in SETTING_LABELS]
    rows = []
    for setting in order:
        runs = results[setting]
        if not runs:
            continue
        row = {"setting": setting, "label": SETTING_LABELS.get(setting, setting),
               "sparsity": 0.0 if setting == "dense" else sparsity, "seeds": len(runs)}
        for metric in task.metrics:
            stats = describe([scale * run[metric] for run in runs])
            row.update({f"{metric}_{key}": value for key, value in stats.items() if key != "n"})
        rows.append(row)
    return rows


def format_table2(rows: list[dict], task: Task | str, markdown: bool = False) -> str:
    """Returns Table 2 as text: one line per setting, each metric as mean ± std [min, max] in percent."""
    task = get_task(task)
    header = ["setting", "sparsity", "seeds"] + [f"{task.display_name} {m}" for m in task.metrics]
    lines = []
    for row in rows:
        sparsity = "" if row["sparsity"] is None else f"{100 * row['sparsity']:.0f}%"
        cells = [row["label"], sparsity, str(row["seeds"])]
        cells += [f"{row[f'{m}_mean']:.2f} ± {row[f'{m}_std']:.2f} [{row[f'{m}_min']:.2f}, {row[f'{m}_max']:.2f}]"
                  for m in task.metrics]
        lines.append(cells)
    return render_table([header] + lines, markdown)


def render_table(table: list[list[str]], markdown: bool = False) -> str:
    """Returns rows of cells (the first row the header) as aligned text columns, or as a markdown table."""
    if markdown:
        out = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
        return "\n".join(out + ["| " + " | ".join(row) + " |" for row in table[1:]])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Returns the path written: the rows as CSV (header from the first row), via a temp file + rename."""
    path = Path(path)
    files.write_text(path, csv_text(rows))
    return path


def csv_text(rows: list[dict]) -> str:
    """Returns the rows as CSV text, the header naming every key of every row."""
    buffer = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# --- the transfer heatmap ----------------------------------------------------------------------------


def differences(matrix: list[list[float]], baseline: list[float] | None) -> list[list[float]]:
    """Returns matrix minus the baseline of each column (NaN stays NaN); the matrix itself when baseline is None."""
    if baseline is None:
        return [list(row) for row in matrix]
    return [[value - base for value, base in zip(row, baseline)] for row in matrix]


def transfer_heatmap(matrix: list[list[float]], row_labels: list[str], col_labels: list[str], path: str | Path,
                     baseline: list[float] | None = None, title: str = "transfer: metric minus dense baseline",
                     unit: str = "points"):
    """Plots and saves a heatmap of matrix minus each column's baseline; returns the matplotlib Figure, or None.

    The colour map is diverging (RdBu: red below zero, blue above) with limits symmetric about
    zero, so a cell's colour is on the side of its sign; every cell is annotated with its value
    and NaN cells (not run) are left grey. A CSV of the plotted numbers is written next to the
    image (same name, .csv) in every case; the Figure is None when matplotlib is not installed.
    """
    path = Path(path)
    values = differences(matrix, baseline)
    write_csv([{"source": label, **dict(zip(col_labels, row))} for label, row in zip(row_labels, values)],
              path.with_suffix(".csv"))
    fig = new_figure(figsize=(1.2 * len(col_labels) + 2.5, 0.6 * len(row_labels) + 1.8))
    if fig is None:
        return None
    import matplotlib
    import numpy as np
    from matplotlib.colors import Normalize

    grid = np.array(values, dtype=float)  # (sources, targets)
    finite = grid[np.isfinite(grid)]
    limit = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="lightgrey")  # red below zero, blue above; grey: not run
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=Normalize(vmin=-limit, vmax=limit), aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            text = "–" if not math.isfinite(grid[i, j]) else f"{grid[i, j]:+.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="white" if math.isfinite(grid[i, j]) and abs(grid[i, j]) > 0.6 * limit else "black")
    ax.set_xticks(range(len(col_labels)), col_labels)
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel("target task (fine-tuned)")
    ax.set_ylabel("source of the mask")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=unit)
    save_figure(fig, path)
    return fig


def plot_sparsity_curve(summary: dict, controls: dict[str, list[tuple[float, float]]], path: str | Path,
                        title: str) -> bool:
    """Plots a ticket summary's metric against sparsity: the IMP curve (mean ± std over seeds), the dense
    model's band (± its noise), and each control's runs ({name: [(sparsity, metric), ...]}) beside them;
    returns False when matplotlib is absent."""
    fig = new_figure(figsize=(5.5, 3.8))
    if fig is None:
        return False
    ax = fig.subplots()
    rows = summary["rounds"]
    ax.axhspan(summary["dense_mean"] - summary["noise"], summary["dense_mean"] + summary["noise"], color="tab:gray",
               alpha=0.2, label="dense ± noise")
    ax.axhline(summary["dense_mean"], color="tab:gray", lw=1)
    # actual_sparsity: the fraction of prunable weights, also for a structured run (whose "sparsity" counts units)
    structure = summary.get("structure", "unstructured")
    ax.errorbar([100 * r.get("actual_sparsity", r["sparsity"]) for r in rows], [r["mean"] for r in rows],
                yerr=[r["std"] for r in rows], marker="o", capsize=3,
                label="IMP subnetwork" + ("" if structure == "unstructured" else f" ({structure})"))
    for (name, points), marker in zip(controls.items(), "sDv^P*X"):
        by_sparsity = {}
        for sparsity, value in points:
            by_sparsity.setdefault(round(sparsity, 4), []).append(value)
        x = sorted(by_sparsity)
        stats = [describe(by_sparsity[s]) for s in x]
        ax.errorbar([100 * s for s in x], [d["mean"] for d in stats], yerr=[d["std"] for d in stats], marker=marker,
                    ls="none", capsize=3, label=SETTING_LABELS.get(name, name))
    ax.set_xlabel("sparsity of the prunable weights (%)")
    ax.set_ylabel(summary["metric"])
    ax.set_title(title, fontsize=10)
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)
    return True


def new_figure(figsize: tuple[float, float]):
    """Returns a matplotlib Figure, or None when matplotlib is not installed (plots are optional).

    A bare Figure, not pyplot: no global backend switch, so notebooks keep their inline plots.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure(figsize=figsize)


SLIDE_FONT_SIZE = 11  # points: readable when a figure fills half a slide
VECTOR_FORMATS = ("svg",)  # written beside every PNG, for slides and papers (any suffix works: .pdf, .svg, .png)


# What makes two drawings of the same figure differ byte for byte: the date a file records, and the random ids
# of an SVG's elements. Without them, identical runs write identical figures.
UNDATED = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


def save_figure(fig, path: str | Path, vector_formats: tuple[str, ...] = VECTOR_FORMATS) -> None:
    """Writes the figure atomically to `path` (format from the suffix) and as each of `vector_formats` beside it,
    every text at least SLIDE_FONT_SIZE points; the same figure gives the same bytes."""
    import matplotlib
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_fontsize(max(text.get_fontsize(), SLIDE_FONT_SIZE))
    fig.tight_layout()
    path = Path(path)
    for target in dict.fromkeys([path, *(path.with_suffix(f".{suffix}") for suffix in vector_formats)]):
        with files.atomic_path(target) as temp, matplotlib.rc_context({"svg.hashsalt": "minilth"}):
            fig.savefig(temp, dpi=150, metadata=UNDATED.get(target.suffix.lstrip(".").lower()))


def is_whole_figure(path: str | Path) -> bool:
    """Returns True when a PNG or SVG file ends as a whole one does (a truncated file does not); other formats: when
    the file exists."""
    path = Path(path)
    if not path.is_file():
        return False
    ending = {".png": b"IEND\xaeB`\x82", ".svg": b"</svg>\n"}.get(path.suffix.lower(), b"")
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - len(ending)))
        return f.read() == ending




def to_json(obj) -> str:
    """Returns JSON text with NaN written as null (valid JSON for other tools)."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, list):
            return [clean(item) for item in value]
        return value
    return json.dumps(clean(obj), indent=2) + "\n"
