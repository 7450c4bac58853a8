"""Where IMP prunes: each mask's sparsity per layer and per matrix (Q, K, V, attention output, feed-forward in
and out, the pooler), as a table, as text and as a grid of heatmaps with the numbers in the cells.

    table = sparsity_table(mask)            # {"parts": [...], "matrices": [...], "cells": {...}, "layers": {...}}
    print(format_sparsity(table))           # the same numbers as the figure
    plot_sparsity({"round 1": m1, "round 2": m2, "random": r}, "sparsity.png")
"""
from __future__ import annotations

import re
from pathlib import Path

from ..prune import Mask
from .figures import annotated_heatmap, new_figure, save

# The columns of the figure: each kind of prunable matrix, by the end of its state-dict name.
MATRICES = {
    "Q": "attention.self.query.weight",
    "K": "attention.self.key.weight",
    "V": "attention.self.value.weight",
    "attn out": "attention.output.dense.weight",
    "FFN in": "intermediate.dense.weight",
    "FFN out": "output.dense.weight",  # checked after "attn out", whose name ends the same way
    "pooler": "pooler.dense.weight",
    "word emb": "embeddings.word_embeddings.weight",
    "position emb": "embeddings.position_embeddings.weight",
    "segment emb": "embeddings.token_type_embeddings.weight",
}


def locate(name: str) -> tuple[str, str]:
    """Returns (part, matrix) of a prunable tensor: ("layer 3", "Q"), ("pooler", "pooler"), ("embeddings", ...)."""
    layer = re.search(r"encoder\.layer\.(\d+)\.", name)
    part = f"layer {layer.group(1)}" if layer else "pooler" if "pooler." in name else "embeddings"
    matrix = next((kind for kind, suffix in MATRICES.items() if name.endswith(suffix)), name)
    return part, matrix


def sparsity_table(mask: Mask) -> dict:
    """Returns the mask's pruned and total weights per (part, matrix) cell, per part and overall.

    {"sparsity", "pruned", "total", "parts": ["layer 0", ..., "pooler"], "matrices": ["Q", ...],
     "cells": {part: {matrix: {"pruned", "total", "sparsity"}}}, "layers": {part: {"pruned", "total", "sparsity"}}}
    """
    cells: dict[str, dict[str, dict]] = {}
    for name, flag in mask.items():
        part, matrix = locate(name)
        cell = cells.setdefault(part, {}).setdefault(matrix, {"pruned": 0, "total": 0})
        cell["pruned"] += mask.pruned_count(name)
        cell["total"] += flag.numel()
    layers = {part: _counts(sum(c["pruned"] for c in row.values()), sum(c["total"] for c in row.values()))
              for part, row in cells.items()}
    for row in cells.values():
        for cell in row.values():
            cell.update(_counts(cell["pruned"], cell["total"]))
    matrices = list(dict.fromkeys(matrix for row in cells.values() for matrix in row))
    return {**_counts(mask.num_pruned, mask.num_total), "parts": list(cells), "matrices": matrices,
            "cells": cells, "layers": layers}


def _counts(pruned: int, total: int) -> dict:
    return {"pruned": pruned, "total": total, "sparsity": pruned / total if total else 0.0}


def format_sparsity(table: dict, title: str = "") -> str:
    """Returns the table as text: one row per part, one column per matrix and the part's own, in % pruned."""
    columns = table["matrices"]
    lines = [title] if title else []
    lines.append(f"{'':10s}" + "".join(f"{m:>9s}" for m in columns) + f"{'all':>9s}")
    for part in table["parts"]:
        row = table["cells"][part]
        cells = "".join(f"{100 * row[m]['sparsity']:8.1f}%" if m in row else f"{'-':>9s}" for m in columns)
        lines.append(f"{part:10s}{cells}{100 * table['layers'][part]['sparsity']:8.1f}%")
    lines.append(f"{'all':10s}{'':{9 * len(columns)}s}{100 * table['sparsity']:8.1f}%")
    return "\n".join(lines)


def plot_sparsity(masks: dict[str, Mask], path: str | Path | None = None, title: str = "% of each matrix pruned"):
    """Returns a Figure with one heatmap per mask (parts down, matrices across, % pruned in each cell), saved as
    PNG and SVG when `path` is given; None without matplotlib."""
    tables = {label: sparsity_table(mask) for label, mask in masks.items()}
    first = next(iter(tables.values()))
    columns = first["matrices"] + ["all"]
    width = 0.75 * len(columns) + 1.0
    fig = new_figure((width * len(tables) + 1.2, 0.42 * len(first["parts"]) + 1.6))
    if fig is None:
        return None
    axes = fig.subplots(1, len(tables), squeeze=False)[0]
    for ax, (label, table) in zip(axes, tables.items()):
        grid = [[100 * table["cells"][part][m]["sparsity"] if m in table["cells"][part] else float("nan")
                 for m in first["matrices"]] + [100 * table["layers"][part]["sparsity"]] for part in table["parts"]]
        image = annotated_heatmap(ax, grid, vmin=0, vmax=100)
        ax.set_xticks(range(len(columns)), columns, rotation=60, ha="right")
        ax.set_yticks(range(len(table["parts"])), table["parts"] if ax is axes[0] else [])
        ax.set_title(f"{label}: {100 * table['sparsity']:.1f}%")
    fig.colorbar(image, ax=list(axes), label=title, fraction=0.03)
    if path is not None:
        save(fig, path)
    return fig

