"""How tickets overlap: the weights two masks both prune, the Jaccard index of their pruned sets, and what two
random masks pruning as many weights would share by chance, computed exactly from its distribution.

    overlap(a, b)                    # {"both", "jaccard", "chance", "chance_per_matrix", "share_of_a", ...}
    overlap_by_part(a, b)            # the same per layer (and the pooler)
    overlap_matrix({"STS-B": a, "MRPC": b, "one-shot": c})     # every pair
    plot_overlap(matrix, "overlap.png")

The Jaccard index of the pruned sets A and B is |A ∩ B| / |A ∪ B|: 1 for the same mask, 0 when they
share nothing. Two masks that each prune most weights share many by chance alone, so each index is
given beside its chance value: E[|A ∩ B| / |A ∪ B|] for two independent masks that prune exactly as
many weights uniformly at random, over the whole prunable set ("chance", the random pruning
control's masks) or matrix by matrix ("chance_per_matrix": the random masks keep each matrix's
sparsity, so only the positions inside a matrix are left to chance).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..prune import Mask, MaskError
from .figures import annotated_heatmap, new_figure, save
from .sparsity import locate

# The distribution of |A ∩ B| is summed over its mean +- WINDOW sqrt(sum of spread_terms): by Serfling's bound
# for sampling without replacement (a sub-Gaussian tail, also for sums of independent blocks), what lies beyond
# has probability below 2 exp(-2 x 20^2) = 1e-347, under float64's smallest number.
WINDOW = 20


def aligned(a: Mask, b: Mask) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Returns (name, a's flags, b's flags) of every tensor both masks hold (`bert.` prefix or not), in a's order;
    MaskError when they share none or a shape differs (masks of different models)."""
    bare = {name.removeprefix("bert."): name for name in b.names()}
    pairs = [(name, a[name], b[bare[name.removeprefix("bert.")]]) for name in a.names()
             if name.removeprefix("bert.") in bare]
    if not pairs:
        raise MaskError("the two masks share no tensor: compare masks of the same model")
    wrong = [name for name, x, y in pairs if x.shape != y.shape]
    if wrong:
        raise MaskError(f"the masks were made for different models: {wrong[0]} has shapes differing; compare masks "
                        f"of the same model")
    return pairs


def overlap(a: Mask, b: Mask) -> dict:
    """Returns how the weights `a` and `b` prune overlap, over the tensors both hold: the counts (pruned_a,
    pruned_b, both, either, total), the Jaccard index, its chance values, and the shares of a's and of b's
    pruned weights that the other prunes too."""
    return _overlap(aligned(a, b))


def _overlap(pairs) -> dict:
    blocks = [(x.numel(), int((~x).sum()), int((~y).sum())) for _, x, y in pairs]  # (n, a, b) per tensor
    both = sum(int((~x & ~y).sum()) for _, x, y in pairs)
    total, pruned_a, pruned_b = (sum(column) for column in zip(*blocks))
    either = pruned_a + pruned_b - both
    return {"tensors": len(pairs), "total": total, "pruned_a": pruned_a, "pruned_b": pruned_b, "both": both,
            "either": either, "jaccard": both / either if either else 1.0,
            "chance": chance_jaccard([(total, pruned_a, pruned_b)]), "chance_per_matrix": chance_jaccard(blocks),
            "share_of_a": both / pruned_a if pruned_a else 1.0, "share_of_b": both / pruned_b if pruned_b else 1.0}


def overlap_by_part(a: Mask, b: Mask) -> dict[str, dict]:
    """Returns overlap() of each part ("layer 0", ..., "pooler"), its chance values over that part's matrices."""
    parts: dict[str, list] = {}
    for pair in aligned(a, b):
        parts.setdefault(locate(pair[0])[0], []).append(pair)
    return {part: _overlap(pairs) for part, pairs in parts.items()}


def only_in(a: Mask, b: Mask) -> Mask:
    """Returns the mask that prunes exactly what `a` prunes and `b` keeps (over the tensors both hold)."""
    return Mask({name: ~(~x & y) for name, x, y in aligned(a, b)})


# --- chance, exactly ---------------------------------------------------------------------------------


def chance_jaccard(blocks: list[tuple[int, int, int]]) -> float:
    """Returns E[|A ∩ B| / |A ∪ B|] for two independent random masks that prune exactly a_i and b_i of the n_i
    weights of each block i, uniformly within it; blocks is [(n_i, a_i, b_i), ...]. 1.0 when neither prunes.

    |A ∪ B| = a + b - |A ∩ B| with a and b fixed, so the expectation needs the distribution of
    X = |A ∩ B| only: in one block X is hypergeometric (b draws from n weights, a of them pruned by
    A); over several it is the sum of independent ones, whose distribution is their convolution.
    """
    spread = WINDOW * math.sqrt(sum(spread_term(*block) for block in blocks)) + 1
    parts = [hypergeometric(*block) for block in blocks] or [(0, np.ones(1))]  # [(x0, pmf)]: P(X_i = x0 + j)
    while len(parts) > 1:  # added up two by two: the long convolutions are few
        odd = parts[-1:] if len(parts) % 2 else []
        parts = [_trim(x + y, convolve(p, q), spread) for (x, p), (y, q) in zip(parts[::2], parts[1::2])] + odd
    start, pmf = parts[0]
    a, b = (sum(block[i] for block in blocks) for i in (1, 2))
    x = start + np.arange(len(pmf))  # (k,) the values of |A ∩ B|
    union = a + b - x
    ratio = np.divide(x, union, out=np.ones(len(x)), where=union > 0)
    return float((pmf * ratio).sum())


def hypergeometric(n: int, a: int, b: int) -> tuple[int, np.ndarray]:
    """Returns (x0, p): P(X = x0 + i) = p[i] for X, the weights two random sets of a and of b out of n share,
    P(x) = C(a, x) C(n - a, b - x) / C(n, b), over the window around its mean where it is not 0 in float64.

    The probabilities come from the ratios of neighbours, P(x+1) / P(x) = (a-x)(b-x) / ((x+1)(n-a-b+x+1)),
    each accurate to float64's rounding, rather than from factorials of numbers near n.
    """
    if not 0 <= a <= n or not 0 <= b <= n:
        raise MaskError(f"cannot prune {a} or {b} of {n} weights")
    mean, spread = a * b / n if n else 0.0, WINDOW * math.sqrt(spread_term(n, a, b)) + 1
    lowest = max(0, a + b - n, math.floor(mean - spread))
    highest = min(a, b, math.ceil(mean + spread))
    x = np.arange(lowest, highest, dtype=np.float64)  # (k - 1,) each step x -> x + 1
    log_ratio = np.log((a - x) * (b - x)) - np.log((x + 1) * (n - a - b + x + 1))
    log_p = np.concatenate([[0.0], np.cumsum(log_ratio)])  # (k,) log P(x) - log P(lowest)
    p = np.exp(log_p - log_p.max())
    return lowest, p / p.sum()


def spread_term(n: int, a: int, b: int) -> float:
    """Returns Serfling's scale of |A ∩ B| in one block, the smaller of a(n-a+1)/n and b(n-b+1)/n: P(|X - mean|
    >= t) <= 2 exp(-2 t^2 / scale), and scales add up over independent blocks."""
    return min(a * (n - a + 1), b * (n - b + 1)) / n if n else 0.0


def convolve(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Returns the distribution of the sum of two independent counts with distributions p and q (FFT when long)."""
    if len(p) * len(q) < 1_000_000:
        return np.convolve(p, q)
    size = len(p) + len(q) - 1
    fft = 1 << (size - 1).bit_length()  # a power of two: the fast length
    return np.clip(np.fft.irfft(np.fft.rfft(p, fft) * np.fft.rfft(q, fft), fft)[:size], 0.0, None)


def _trim(start: int, pmf: np.ndarray, spread: float) -> tuple[int, np.ndarray]:
    """Returns the distribution cut to its mean +- spread, renormalised: the convolutions stay short."""
    mean = start + float(np.dot(np.arange(len(pmf)), pmf))
    low, high = max(0, math.floor(mean - spread) - start), min(len(pmf), math.ceil(mean + spread) - start + 1)
    kept = pmf[low:high]
    return start + low, kept / kept.sum()


# --- every pair, and its figures -----------------------------------------------------------------------


def overlap_matrix(masks: dict[str, Mask]) -> dict:
    """Returns overlap() of every pair of masks as matrices, rows and columns in the order of `masks`:
    {"labels", "sparsity", "jaccard", "chance", "chance_per_matrix", "share" (of the row's pruned weights that the
    column prunes too)}."""
    labels = list(masks)
    cells = {(i, j): overlap(masks[labels[i]], masks[labels[j]]) for i in range(len(labels))
             for j in range(i, len(labels))}
    cell = lambda i, j: cells[min(i, j), max(i, j)]  # noqa: E731  overlap is symmetric
    grid = lambda key: [[cell(i, j)[key] for j in range(len(labels))] for i in range(len(labels))]  # noqa: E731
    share = [[cell(i, j)["share_of_a" if i <= j else "share_of_b"] for j in range(len(labels))]
             for i in range(len(labels))]
    return {"labels": labels, "sparsity": [masks[label].sparsity for label in labels], "jaccard": grid("jaccard"),
            "chance": grid("chance"), "chance_per_matrix": grid("chance_per_matrix"), "share": share}


def format_overlap(matrix: dict) -> str:
    """Returns the Jaccard indices of every pair as text, each with its chance value (whole set / per matrix)."""
    width = max(len(label) for label in matrix["labels"]) + 2
    lines = ["Jaccard index of the pruned weights [chance: random masks of the same sparsity / of each matrix's]"]
    for i, label in enumerate(matrix["labels"]):
        for j in range(i + 1, len(matrix["labels"])):
            lines.append(f"{label:>{width}s} & {matrix['labels'][j]:{width}s} {matrix['jaccard'][i][j]:.3f}  "
                         f"[{matrix['chance'][i][j]:.3f} / {matrix['chance_per_matrix'][i][j]:.3f}]  "
                         f"{100 * matrix['share'][i][j]:.1f}% of the first's pruned weights")
    return "\n".join(lines)


def plot_overlap(matrix: dict, path: str | Path | None = None):
    """Returns a Figure of two heatmaps of every pair: the Jaccard index, and how far it stands above two random
    masks of the same sparsities (index minus chance); saved as PNG and SVG when `path` is given."""
    labels, size = matrix["labels"], len(matrix["labels"])
    fig = new_figure((2 * (0.9 * size + 2.2), 0.7 * size + 2.0))
    if fig is None:
        return None
    above = [[j - c for j, c in zip(*rows)] for rows in zip(matrix["jaccard"], matrix["chance"])]
    for ax, grid, title in zip(fig.subplots(1, 2), (matrix["jaccard"], above),
                               ("Jaccard index of the pruned weights", "above two random masks")):
        image = annotated_heatmap(ax, grid, vmin=0.0, vmax=1.0, cmap="Purples", text="{:.2f}")
        ax.set_xticks(range(size), labels, rotation=45, ha="right")
        ax.set_yticks(range(size), labels)
        ax.set_title(title)
    fig.colorbar(image, ax=fig.axes, fraction=0.03)
    if path is not None:
        save(fig, path)
    return fig


def plot_overlap_by_part(pairs: dict[str, dict[str, dict]], path: str | Path | None = None):
    """Returns a Figure of the Jaccard index per layer of each pair ({label: overlap_by_part(a, b)}), its chance
    value (random masks with each matrix's sparsity) dashed in the same colour; saved when `path` is given."""
    fig = new_figure((7.0, 4.0))
    if fig is None:
        return None
    ax = fig.subplots()
    for (label, parts), colour in zip(pairs.items(), [f"C{i}" for i in range(10)]):
        names = list(parts)
        ax.plot(names, [parts[p]["jaccard"] for p in names], marker="o", color=colour, label=label)
        ax.plot(names, [parts[p]["chance_per_matrix"] for p in names], ls="--", color=colour)
    ax.set_ylabel("Jaccard index (dashed: chance)")
    ax.set_ylim(0, 1.02)
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    if path is not None:
        save(fig, path)
    return fig
