"""Structured pruning: whole attention heads and feed-forward neurons, and models physically without them.

A unit is one attention head or one feed-forward neuron of a layer. A structured mask is an
ordinary element `Mask` (so fine-tuning, rewinding, the controls and the output folder work as
for single weights) in which every unit is kept or pruned whole:

    head h of layer l     rows h*d .. h*d+d-1 of attention.self.{query,key,value}.weight and
                          the same columns of attention.output.dense.weight      (4 d H weights)
    neuron i of layer l   row i of intermediate.dense.weight and column i of output.dense.weight (2 H)

Biases are never masked, and need not be: a pruned head's value rows are zero, so its output is
its value bias, which its zeroed columns of the attention output multiply by 0; a pruned neuron's
activation is act(bias), which its zeroed column of output.dense multiplies by 0. So the masked
model computes what the model without those units computes, and `shrink` builds that smaller model.

Sparsity of a structured mask: a fraction s removes round(s x all heads) heads and round(s x all
neurons) neurons, each ranked over the whole model (model-global, as the paper's unstructured
pruning is global), so one layer may lose more than another, all of its heads or neurons included;
or, per layer, round(s x a layer's heads) of every layer's heads, and the same for neurons.
`Mask.sparsity` still gives the fraction of the prunable weights removed, the number to compare
with an unstructured ticket at the same parameter count.

    units = Units.of_mask(mask, num_heads=12)           # which heads and neurons a mask keeps
    mask = structured_prune(model, mask, 0.5)           # the least important 50% of heads and of neurons
    mask = structured_prune(model, mask, 0.5, per_layer=True)  # or 50% of every layer's
    small = shrink(model, mask)                          # fewer heads, narrower feed-forward, same outputs
"""
from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .model import BertLayer, BertPreTrainedModel
from .prune import Mask, MaskError, TensorsLike, _count_for, _keep_largest, named_tensors

KINDS = ("heads", "neurons")
# what each structure prunes; "unstructured" is the paper's single weights
STRUCTURES = {"unstructured": (), "heads_and_neurons": KINDS, "heads": ("heads",), "neurons": ("neurons",)}
IMPORTANCES = ("magnitude", "gradient")

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


def _per_unit(tensor: torch.Tensor, axis: int, count: int) -> torch.Tensor:
    """Returns a matrix's entries grouped by unit: (count, entries of one unit), units along `axis`."""
    return tensor.movedim(axis, 0).reshape(count, -1)  # (count, d H) for a head, (count, H) for a neuron


def _layer_matrices(names: Iterable[str]) -> list[dict[str, str]]:
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


def _matrices_of(roles: dict[str, str], kind: str) -> list[tuple[str, int]]:
    """Returns (name, axis) of a layer's matrices holding units of `kind`: Q, K, V, attention output; or the two
    feed-forward matrices."""
    return [(name, ROLES[role][1]) for role, name in roles.items() if ROLES[role][0] == kind]


def _unit_count(kind: str, flag_or_weight: torch.Tensor, axis: int, num_heads: int) -> int:
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
        layers = _layer_matrices(mask.names())
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
    for name, axis in _matrices_of(roles, kind):
        blocks = _per_unit(mask[name], axis, _unit_count(kind, mask[name], axis, num_heads))  # (units, entries)
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


# --- how important each unit is ------------------------------------------------------------------


def magnitude_importance(model_or_sd: TensorsLike, mask: Mask, num_heads: int | None = None) -> dict[str, torch.Tensor]:
    """Returns each unit's L2 norm over all its weights: {"heads": (L, nh), "neurons": (L, I)}.

    A head's weights are its d rows of Q, K and V and its d columns of the attention output
    (4 d H weights); a neuron's, its row of intermediate.dense and its column of output.dense (2 H).
    """
    tensors, num_heads = named_tensors(model_or_sd), _num_heads(model_or_sd, num_heads)
    squares = {kind: [] for kind in KINDS}
    for roles in _layer_matrices(mask.names()):
        for kind in KINDS:
            per_matrix = [_per_unit(tensors[name].detach().float().pow(2), axis,
                                    _unit_count(kind, tensors[name], axis, num_heads)).sum(1)
                          for name, axis in _matrices_of(roles, kind)]  # each (units,)
            squares[kind].append(sum(per_matrix).cpu())
    return {kind: torch.stack(rows).sqrt() for kind, rows in squares.items()}


def gradient_importance(model: BertPreTrainedModel, batches: Iterable[dict]) -> dict[str, torch.Tensor]:
    """Returns Michel et al. (2019)'s importance of every head, and the same for every neuron: {"heads": (L, nh),
    "neurons": (L, I)}.

    A gate of ones multiplies each head's output and each neuron's activation; the importance is
    |dLoss/dgate| summed over the batches (each a dict the model takes, labels included, in eval
    mode), then divided by its layer's L2 norm, as Michel et al. do (run_bertology.py): without it
    the layers' scales, not the units, decide a model-global ranking.
    """
    layers, config = _encoder(model).layer, model.config
    device = next(model.parameters()).device
    gates = {"heads": torch.ones(len(layers), config.num_attention_heads, device=device, requires_grad=True),
             "neurons": torch.ones(len(layers), config.intermediate_size, device=device, requires_grad=True)}
    head_size = config.hidden_size // config.num_attention_heads
    hooks = []
    for index, layer in enumerate(layers):
        hooks.append(layer.attention.self.register_forward_hook(_gate(gates["heads"][index], head_size)))
        hooks.append(layer.intermediate.register_forward_hook(_gate(gates["neurons"][index], 1)))
    scores = {kind: torch.zeros(gate.shape) for kind, gate in gates.items()}
    was_training = model.training
    model.eval()
    try:
        for batch in batches:
            grads = torch.autograd.grad(model(**batch).loss, [gates[kind] for kind in KINDS])
            for kind, grad in zip(KINDS, grads):
                scores[kind] += grad.abs().cpu()
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return {kind: score / score.norm(dim=1, keepdim=True).clamp_min(1e-20) for kind, score in scores.items()}


def _gate(gate: torch.Tensor, width: int):
    """Returns a forward hook multiplying a module's output (..., units x width) by one gate per unit."""
    return lambda module, inputs, output: output * gate.repeat_interleave(width)  # (..., units x width)


# --- pruning -------------------------------------------------------------------------------------


def structured_prune(model_or_sd: TensorsLike, mask: Mask, target_sparsity: float | dict[str, int],
                     kinds: tuple[str, ...] = KINDS, importance: dict[str, torch.Tensor] | None = None,
                     num_heads: int | None = None, per_layer: bool = False) -> Mask:
    """Returns a new structured mask pruning the least important units of each of `kinds`, ranked over the whole
    model, to round(target x all units of that kind) in all, or to the exact counts {"heads": 36, "neurons": 4608}.

    With `per_layer`, units are ranked within each layer and every layer prunes the same share,
    round(target x its units) (counts are spread as that share): an evenly narrower model, where
    a model-wide ranking may strip a layer the classifier barely computes (the last one) and
    leave the costly ones wide. Units the mask already prunes stay pruned; a kind left out keeps
    its units as the mask has them. `importance` (e.g. gradient_importance's) defaults to
    magnitude_importance. Ties go by position: layer, then unit, lower first pruned.
    """
    mask.check_fits(model_or_sd)
    num_heads = _num_heads(model_or_sd, num_heads)
    units = Units.of_mask(mask, num_heads)
    importance = importance or magnitude_importance(model_or_sd, mask, num_heads)
    counts = target_sparsity if isinstance(target_sparsity, dict) else {
        kind: _count_for(target_sparsity, units.num_total(kind)) for kind in kinds}
    kept = {kind: units[kind] for kind in KINDS}
    for kind, count in counts.items():
        if count < units.num_pruned(kind):
            raise MaskError(f"{count} {kind} to prune is fewer than the {units.num_pruned(kind)} the mask already "
                            f"prunes; pruned units cannot come back, ask for a higher target")
        scores = importance[kind].detach().float().cpu().clone()  # (L, units)
        if not torch.isfinite(scores).all():
            raise MaskError(f"the importance of the {kind} holds NaN or inf; check the model's weights and loss")
        scores[~units[kind]] = -1.0  # already pruned: ranked first, so they stay pruned
        if per_layer:
            kept[kind] = _keep_largest_per_layer(scores, units[kind], count / units.num_total(kind), kind)
        else:
            kept[kind] = _keep_largest(scores.flatten(), count).view(scores.shape)
    return Units(**kept).expand(mask)


def _keep_largest_per_layer(scores: torch.Tensor, kept: torch.Tensor, share: float, kind: str) -> torch.Tensor:
    """Returns (L, units) bool keeping, in every layer, all but round(share x its units) of the lowest scores."""
    count = _count_for(share, scores.shape[1])  # every layer holds as many units of a kind
    for layer, already in enumerate((~kept).sum(1).tolist()):
        if count < already:
            raise MaskError(f"layer {layer} already prunes {already} {kind}, more than the {count} a per-layer "
                            f"share of {share:.3f} allows: prune it per layer from the start")
    return _keep_largest_in_rows(scores, [count] * len(scores))


def _keep_largest_in_rows(scores: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Returns (L, units) bool keeping all but the counts[l] lowest scores of each row l (ties: lower first pruned)."""
    return torch.stack([_keep_largest(row, count) for row, count in zip(scores, counts)])


def random_structured_mask(like: Mask, num_heads: int, seed: int = 0, layerwise: bool = False) -> Mask:
    """Returns a random structured mask over `like`'s tensors that prunes as many heads and as many neurons as
    `like` does, anywhere in the model, or with `layerwise` as many in every layer."""
    target = Units.of_mask(like, num_heads)
    generator = torch.Generator().manual_seed(seed)
    kept = {}
    for kind in KINDS:
        pruned = ~target[kind]  # (L, units)
        scores = torch.rand(pruned.shape, generator=generator)  # (L, units)
        if layerwise:
            kept[kind] = _keep_largest_in_rows(scores, pruned.sum(1).tolist())
        else:
            kept[kind] = _keep_largest(scores.flatten(), int(pruned.sum())).view(pruned.shape)
    return Units(**kept).expand(like)


# --- the smaller model ---------------------------------------------------------------------------


def shrink(model: BertPreTrainedModel, mask: Mask) -> BertPreTrainedModel:
    """Returns a copy of the model without the heads and neurons the structured mask prunes: fewer heads per layer
    and a narrower feed-forward, with the masked model's outputs.

    Its config records what was removed (`pruned_heads`, transformers' convention, and
    `intermediate_sizes`), so weights.save_pretrained writes a checkpoint that from_pretrained reads.
    """
    config = model.config
    if config.pruned_heads or config.intermediate_sizes is not None:
        raise MaskError("the model has already lost heads or neurons; shrink the full model with the whole mask")
    mask.check_fits(model)
    units = Units.of_mask(mask, config.num_attention_heads)
    widths = units.intermediate_sizes()
    smaller = dataclasses.replace(config, pruned_heads=units.pruned_heads(),  # heads alone: transformers' config
                                  intermediate_sizes=None if units.neurons.all() else widths)
    small = copy.deepcopy(model)
    for module in small.modules():
        if isinstance(module, BertPreTrainedModel):
            module.config = smaller
    head_size = config.hidden_size // config.num_attention_heads
    layers = _encoder(small).layer
    for index, layer in enumerate(layers):
        weight = layer.attention.self.query.weight
        narrow = BertLayer(smaller, index).to(device=weight.device, dtype=weight.dtype).train(layer.training)
        kept = {"heads": units.heads[index].repeat_interleave(head_size), "neurons": units.neurons[index]}
        narrow.load_state_dict(_kept_slices(layer.state_dict(), kept))
        layers[index] = narrow
    return small


def _kept_slices(layer_state: dict[str, torch.Tensor], kept: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Returns a layer's state dict with only the kept heads' and neurons' rows, columns and biases."""
    sliced = dict(layer_state)
    for role, (kind, axis) in ROLES.items():
        weight = layer_state[f"{role}.weight"]
        index = kept[kind].to(weight.device)  # (rows,) or (columns,) bool
        sliced[f"{role}.weight"] = weight[index] if axis == 0 else weight[:, index]
        if axis == 0:  # a unit's rows come with their biases; an output's bias is the layer's, kept whole
            sliced[f"{role}.bias"] = layer_state[f"{role}.bias"][index]
    return sliced


def _encoder(model: nn.Module) -> nn.Module:
    """Returns the BertEncoder of a headed model (model.bert.encoder) or of a BertModel."""
    return model.bert.encoder if hasattr(model, "bert") else model.encoder


def _num_heads(model_or_sd: TensorsLike, num_heads: int | None) -> int:
    """Returns num_heads, or the model's config's number of heads when not given."""
    if num_heads is not None:
        return num_heads
    config = getattr(model_or_sd, "config", None)
    if config is None:
        raise MaskError("a state dict does not say how many heads a layer has: pass num_heads")
    return config.num_attention_heads
