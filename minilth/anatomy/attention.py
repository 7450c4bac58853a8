"""What the attention does: each head's attention probabilities, and over a dataset how much they changed between
two models (the dense model and the ticket, both fine-tuned), how spread out they are, and for masked-language
modelling how much of them goes to the positions the model must predict.

    maps = attention_maps(model, batch)          # one (B, nh, T, T) per layer
    measures = attention_measures({"dense": dense, "ticket": ticket}, dev, task, pairs=[("dense", "ticket")])
    measures["js"]["dense|ticket"]               # (L, nh) mean Jensen-Shannon divergence, in bits

A head's attention from one token is a distribution over the tokens of its sequence. Two of them,
p and q, differ by the Jensen-Shannon divergence JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2 with
m = (p + q) / 2: 0 for the same distribution, 1 bit at most (no token in common). Its entropy
H(p) = -sum p log2 p is 0 bits when the token attends to one token only, log2(T) when it attends to
all T alike. Every measure is a mean over the real tokens of the data (padding never counts).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.batches import batches
from ..fast import token_layout
from ..train import prepare_batch
from .figures import annotated_heatmap, new_figure, save


def encoder_of(model):
    """Returns the BertModel of a model with a task head (its `bert`), or the model itself."""
    return getattr(model, "bert", model)


@torch.no_grad()
def attention_maps(model, batch: dict) -> list[torch.Tensor]:
    """Returns each layer's attention probabilities softmax(Q K^T / sqrt(d) + mask) of the batch (input_ids,
    attention_mask, token_type_ids), as float32 (B, nh, T, T); the rows and columns of padding are 0.

    PyTorch's fused attention never writes the probabilities down, so they are computed here, under
    every execution, from the Q and K that each layer's own projections produced in the forward
    (kept by hooks), by the formula of BertSelfAttention.forward. In eval mode: no dropout.
    """
    bert = encoder_of(model)
    kept, hooks = {}, []
    for index, layer in enumerate(bert.encoder.layer):
        for kind, projection in (("q", layer.attention.self.query), ("k", layer.attention.self.key)):
            hooks.append(projection.register_forward_hook(
                lambda module, inputs, output, key=(index, kind): kept.__setitem__(key, output)))
    was_training = bert.training
    try:
        bert.eval()
        bert(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
    finally:
        bert.train(was_training)
        for hook in hooks:
            hook.remove()
    real = batch["attention_mask"].bool()  # (B, T)
    tokens = token_layout(batch["attention_mask"], bert.config.execution)  # where the forward kept the tokens
    maps = []
    for index, layer in enumerate(bert.encoder.layer):
        heads = layer.attention.self
        q, k = (tokens.restore(kept[index, kind]).float().unflatten(-1, (heads.num_heads, heads.head_size))
                .transpose(1, 2) for kind in "qk")  # (B, nh, T, d) each, zeros at padding
        scores = q @ k.transpose(-2, -1) / math.sqrt(heads.head_size)  # (B, nh, T, T)
        scores = scores.masked_fill(~real[:, None, None, :], float("-inf"))  # padding keys get no weight
        maps.append(scores.softmax(dim=-1) * real[:, None, :, None])  # padding queries: rows of 0
    return maps


def entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """Returns -sum p log2 p over the last dimension (a row of zeros has 0)."""
    return -torch.special.xlogy(p, p).sum(-1) / math.log(2)


def js_divergence_bits(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Returns the Jensen-Shannon divergence of the distributions along the last dimension, in bits (0 to 1)."""
    p, q = p.double(), q.double()  # in float32 (p + q) / 2 underflows to 0 where p is the smallest subnormal: KL = inf
    m = (p + q) / 2
    kl = lambda a: (torch.special.xlogy(a, a) - torch.special.xlogy(a, m)).sum(-1)  # noqa: E731  KL(a || m), nats
    return (kl(p) + kl(q)) / (2 * math.log(2))


def attention_measures(models: dict, data, task, pairs: list[tuple[str, str]] = (), max_examples: int | None = None,
                       batch_size: int = 32, progress: bool = True) -> dict:
    """Returns per-head means over the real tokens of `data`, each (L, nh) as nested lists:

    "entropy" {model: bits}; "js" {"a|b": bits} for each pair of models; for masked-language
    modelling (the positions to predict masked as `evaluate` masks them) "target_mass" {model: the
    attention a token gives the positions to predict, summed}, "target_share" (what uniform
    attention over the sequence would give them) and "target_entropy" {model: bits, from the
    positions to predict only}; "tokens" and "targets": how many were averaged over.
    """
    device = next(next(iter(models.values())).parameters()).device
    features = data.features[:max_examples]
    sums: dict[str, dict[str, torch.Tensor]] = {}
    counts = {"tokens": 0, "targets": 0}
    order = batches(features, batch_size, pad_id=getattr(data, "pad_id", 0))
    total = math.ceil(len(features) / batch_size)
    for step, batch in enumerate(tqdm(order, total=total, desc="attention", disable=not progress)):
        batch = prepare_batch(batch, task, data, device, masking_seed=step)  # MLM: evaluate's masks
        maps = {label: torch.stack(attention_maps(model, batch)) for label, model in models.items()}  # (L,B,nh,T,T)
        real = batch["attention_mask"].bool()[None, :, None, :]  # (1, B, 1, T): the query rows that count
        add = lambda key, label, rows: _accumulate(sums, key, label, (rows * real).sum((1, 3)))  # noqa: E731
        counts["tokens"] += int(batch["attention_mask"].sum())
        for label, p in maps.items():
            add("entropy", label, entropy_bits(p))
        for a, b in pairs:
            add("js", f"{a}|{b}", js_divergence_bits(maps[a], maps[b]))
        if task.kind == "mlm":
            target = batch["labels"] != -100  # (B, T) the positions to predict
            counts["targets"] += int(target.sum())
            for label, p in maps.items():
                add("target_mass", label, (p * target[None, :, None, None, :]).sum(-1))  # keys that are targets
                _accumulate(sums, "target_entropy", label, (entropy_bits(p) * target[None, :, None, :]).sum((1, 3)))
    measures = {key: {label: (total_ / counts["targets" if key == "target_entropy" else "tokens"]).tolist()
                      for label, total_ in values.items()} for key, values in sums.items()}
    if task.kind == "mlm":
        measures["target_share"] = counts["targets"] / counts["tokens"]  # mean over query tokens of targets/length
    return {**measures, **counts}


def _accumulate(sums: dict, key: str, label: str, value: torch.Tensor) -> None:
    sums.setdefault(key, {})
    sums[key][label] = sums[key].get(label, 0) + value.double()


# --- figures -----------------------------------------------------------------------------------------


def plot_head_measure(values: dict[str, list[list[float]]], path: str | Path | None = None, label: str = "bits"):
    """Returns a Figure of one heatmap per entry of `values` ({title: (L, nh)}), layers down, heads across, each
    cell's value written in it; saved as PNG and SVG when `path` is given."""
    grids = list(values.values())
    layers, heads = len(grids[0]), len(grids[0][0])
    fig = new_figure((0.62 * heads * len(grids) + 1.8, 0.5 * layers + 1.6))
    if fig is None:
        return None
    top = max(max(max(row) for row in grid) for grid in grids)  # one colour scale for every panel
    axes = fig.subplots(1, len(grids), squeeze=False)[0]
    for ax, (title, grid) in zip(axes, values.items()):
        image = annotated_heatmap(ax, [[100 * v for v in row] for row in grid], 0, 100 * top, "Oranges", "{:.0f}")
        ax.set_xticks(range(heads), [str(h) for h in range(heads)])
        ax.set_yticks(range(layers), [f"layer {i}" for i in range(layers)] if ax is axes[0] else [])
        ax.set_xlabel("head")
        ax.set_title(title)
    fig.colorbar(image, ax=list(axes), label=f"{label} x 100", fraction=0.03)
    if path is not None:
        save(fig, path)
    return fig


MAX_TOKENS_DRAWN = 48  # tokens per axis of an attention-map figure


def plot_attention_maps(maps: dict[str, list[torch.Tensor]], tokens: list[str], heads: list[tuple[int, int]],
                        path: str | Path | None = None):
    """Returns a Figure of the attention of a few heads on one sequence, the models side by side ({model: the
    sequence's attention_maps, (nh, T, T) per layer}); rows are the heads (layer, head); each panel's row is
    a token attending, its columns the tokens attended to. Saved as PNG and SVG when `path` is given.

    A sequence longer than MAX_TOKENS_DRAWN is drawn to its first MAX_TOKENS_DRAWN tokens (the maps cut there,
    not renormalised): an MLM block's 128 labels per axis are unreadable, and take half a minute to draw."""
    shown = min(len(tokens), MAX_TOKENS_DRAWN)
    tokens = tokens[:shown]
    size = 0.17 * len(tokens) + 1.2
    fig = new_figure((size * len(maps) + 1.0, size * len(heads)), layout="compressed")  # room for the tokens
    if fig is None:
        return None
    axes = fig.subplots(len(heads), len(maps), squeeze=False)
    for row, (layer, head) in enumerate(heads):
        for column, (label, layers) in enumerate(maps.items()):
            ax = axes[row][column]
            image = ax.imshow(layers[layer][head][:shown, :shown].numpy(), vmin=0, vmax=1, cmap="Greys")
            ax.set_xticks(range(len(tokens)), tokens if row == len(heads) - 1 else [], rotation=90)
            ax.set_yticks(range(len(tokens)), tokens if column == 0 else [])
            ax.set_title(f"{label}, layer {layer} head {head}")
    fig.colorbar(image, ax=fig.axes, label="attention", fraction=0.03)
    if path is not None:
        save(fig, path)
    return fig
