"""Units of a structured mask: attention heads and feed-forward neurons, which rows and columns each owns.

A unit is one attention head or one feed-forward neuron of a layer. A structured mask is an
ordinary element `Mask` (so fine-tuning, rewinding, the controls and the output folder work as
for single weights) in which every unit is kept or pruned whole:

    head h of layer l     rows h*d .. h*d+d-1 of attention.self.{query,key,value}.weight and
                          the same columns of attention.output.dense.weight      (4 d H weights)
    neuron i of layer l   row i of intermediate.dense.weight and column i of output.dense.weight (2 H)

Biases are never masked, and need not be: a pruned head's value rows are zero, so its output is
its value bias, which its zeroed columns of the attention output multiply by 0; a pruned neuron's
activation is act(bias), which its zeroed column of output.dense multiplies by 0. So the masked
model computes what the model without those units computes, and shrink.py builds that smaller model.

    units = Units.of_mask(mask, num_heads=12)   # which heads and neurons a mask keeps
    units.expand(mask)                          # and back: the element mask of those units
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from ..prune import Mask, MaskError, TensorsLike

KINDS = ("heads", "neurons")
# The matrices of a layer that hold units: (kind, axis), axis 0 = a unit owns rows, 1 = columns.
ROLES = {
    "attention.self.query": ("heads", 0),
    "attention.self.key": ("heads", 0),
    "attention.self.value": ("heads", 0),
    "attention.output.dense": ("heads", 1),
    "intermediate.dense": ("neurons", 0),
    "output.dense": ("neurons", 1),
}
LAYER_MATRIX = re.compile(r"encoder\.layer\.(\d+)\.(" + "|".join(re.escape(role) for role in ROLES) + r")\.weight$")


def per_unit(tensor: torch.Tensor, axis: int, count: int) -> torch.Tensor:
    """Returns a matrix's entries grouped by unit: (count, entries of one unit), units along `axis`."""
    return tensor.movedim(axis, 0).reshape(count, -1)  # (count, d H) for a head, (count, H) for a neuron


def layer_matrices(names: Iterable[str]) -> list[dict[str, str]]:
    """Returns, layer by layer, role -> the name of that matrix; every layer must hold all six matrices."""
    layers: dict[int, dict[str, str]] = {}
    for name in names:
        match = LAYER_MATRIX.search(name)
        if match:
            layers.setdefault(int(match.group(1)), {})[match.group(2)] = name
    if not layers:
        raise MaskError("the mask holds no encoder layer matrices (attention.self.query.weight, ...): "
                        "structured pruning needs a mask over the prunable set")
    for index in range(max(layers) + 1):
        missing = [role for role in ROLES if role not in layers.get(index, {})]
        if missing:
            raise MaskError(f"structured pruning needs all six matrices of every layer in the mask; layer {index} "
                            f"lacks {', '.join(missing)}")
    return [layers[index] for index in range(len(layers))]


def matrices_of(roles: dict[str, str], kind: str) -> list[tuple[str, int]]:
    """Returns (name, axis) of a layer's matrices holding units of `kind`: Q, K, V, attention output; or the two
    feed-forward matrices."""
    return [(name, ROLES[role][1]) for role, name in roles.items() if ROLES[role][0] == kind]


def unit_count(kind: str, flag_or_weight: torch.Tensor, axis: int, num_heads: int) -> int:
    """Returns how many units of `kind` a matrix holds: the heads, or its rows (columns) of neurons."""
    return num_heads if kind == "heads" else flag_or_weight.shape[axis]


# --- which units a mask keeps --------------------------------------------------------------------


@dataclass
class Units:
    """The heads and feed-forward neurons a structured mask keeps, True = kept."""

    heads: torch.Tensor  # (L, nh) bool
    neurons: torch.Tensor  # (L, I) bool

    def __getitem__(self, kind: str) -> torch.Tensor:
        return getattr(self, kind)

    def num_total(self, kind: str) -> int:
        return self[kind].numel()

    def num_pruned(self, kind: str) -> int:
        return self[kind].numel() - int(self[kind].sum())

    def fraction_pruned(self, kind: str) -> float:
        return self.num_pruned(kind) / self.num_total(kind)

    def pruned_heads(self) -> dict[int, list[int]]:
        """Returns {layer: [removed heads]} for the layers that lose any: transformers' `pruned_heads`."""
        return {layer: (~kept).nonzero().flatten().tolist() for layer, kept in enumerate(self.heads) if not kept.all()}

    def intermediate_sizes(self) -> list[int]:
        """Returns each layer's number of kept neurons: its feed-forward width once the others are removed."""
        return self.neurons.sum(1).tolist()

    def describe(self) -> str:
        """Returns e.g. '36 of 72 heads (50.0%) and 4,608 of 9,216 neurons (50.0%) removed'."""
        return " and ".join(f"{self.num_pruned(kind):,} of {self.num_total(kind):,} {kind} "
                            f"({100 * self.fraction_pruned(kind):.1f}%)" for kind in KINDS) + " removed"

    @classmethod
    def of_mask(cls, mask: Mask, num_heads: int) -> "Units":
        """Returns the units a structured mask keeps; MaskError when a unit is partly pruned, or pruned in one of
        its matrices and kept in another, or a matrix outside the layers (the pooler) is pruned at all."""
        layers = layer_matrices(mask.names())
        kept = {kind: [] for kind in KINDS}
        for index, roles in enumerate(layers):
            for kind in KINDS:
                kept[kind].append(_agreed_units(mask, index, roles, kind, num_heads))
        in_layers = {name for roles in layers for name in roles.values()}
        for name in mask.names():
            if name not in in_layers and not mask[name].all():
                raise MaskError(f"{name} is partly pruned: a structured mask prunes only whole heads and neurons; "
                                f"start structured pruning from a dense mask")
        return cls(torch.stack(kept["heads"]), torch.stack(kept["neurons"]))

    def expand(self, like: Mask) -> Mask:
        """Returns the element mask of these units over `like`'s tensors (names and shapes): a unit's rows or
        columns follow it; tensors outside the layers' six matrices (pooler, embeddings) are kept whole."""
        flags = {}
        for name, flag in like.items():
            match = LAYER_MATRIX.search(name)
            if match is None:
                flags[name] = torch.ones(flag.shape, dtype=torch.bool)
                continue
            kind, axis = ROLES[match.group(2)]
            kept = self[kind][int(match.group(1))]  # (units,)
            along = kept.repeat_interleave(flag.shape[axis] // kept.numel())  # (rows,) or (columns,)
            flags[name] = (along[:, None] if axis == 0 else along[None, :]).expand(flag.shape).clone()
        return Mask(flags)


def _agreed_units(mask: Mask, layer: int, roles: dict[str, str], kind: str, num_heads: int) -> torch.Tensor:
    """Returns which units of `kind` layer `layer` keeps, after checking each is whole and agreed on by its matrices."""
    agreed, first_name = None, None
    for name, axis in matrices_of(roles, kind):
        blocks = per_unit(mask[name], axis, unit_count(kind, mask[name], axis, num_heads))  # (units, entries)
        kept, partly = blocks.all(1), blocks.any(1) & ~blocks.all(1)  # (units,) each
        if partly.any():
            unit = int(partly.nonzero()[0])
            raise MaskError(f"layer {layer} {kind[:-1]} {unit} is partly pruned in {name}: not a structured mask")
        if agreed is None:
            agreed, first_name = kept, name
        elif not torch.equal(kept, agreed):
            unit = int((kept != agreed).nonzero()[0])
            raise MaskError(f"layer {layer} {kind[:-1]} {unit} is pruned in one of {first_name} and {name} and kept "
                            f"in the other: not a structured mask")
    return agreed


def encoder_of(model: nn.Module) -> nn.Module:
    """Returns the BertEncoder of a headed model (model.bert.encoder) or of a BertModel."""
    return model.bert.encoder if hasattr(model, "bert") else model.encoder


def num_heads_of(model_or_sd: TensorsLike, num_heads: int | None) -> int:
    """Returns num_heads, or the model's config's number of heads when not given."""
    if num_heads is not None:
        return num_heads
    config = getattr(model_or_sd, "config", None)
    if config is None:
        raise MaskError("a state dict does not say how many heads a layer has: pass num_heads")
    return config.num_attention_heads
