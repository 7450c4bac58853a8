"""Structured pruning: the least important heads and neurons, over the whole model or within each layer.

Sparsity of a structured mask: a fraction s removes round(s x all heads) heads and round(s x all
neurons) neurons, each ranked over the whole model (model-global, as the paper's unstructured
pruning is global), so one layer may lose more than another, all of its heads or neurons included;
or, per layer, round(s x a layer's heads) of every layer's heads, and the same for neurons.
`Mask.sparsity` still gives the fraction of the prunable weights removed, the number to compare
with an unstructured ticket at the same parameter count.

    mask = structured_prune(model, mask, 0.5)                  # the least important 50% of heads and of neurons
    mask = structured_prune(model, mask, 0.5, per_layer=True)  # or 50% of every layer's
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.tasks import Task
from ..prune import Mask, MaskError, TensorsLike, count_to_prune, keep_largest
from ..settings import check, flag, setting
from .importance import gradient_importance, importance_batches, magnitude_importance
from .units import KINDS, Units, num_heads_of

# what each structure prunes; "unstructured" is the paper's single weights
STRUCTURES = {"unstructured": (), "heads_and_neurons": KINDS, "heads": ("heads",), "neurons": ("neurons",)}
IMPORTANCES = ("magnitude", "gradient")
RANKING_SCOPES = ("model", "layer")  # --rank-within: where units are ranked
RANKED_ON = ("first_seed", "every_seed")  # --rank-on: the round's trained models the next mask is ranked on
GRADIENT_BATCHES = 8  # --importance gradient: training batches its |dLoss/dgate| is summed over (0: all)
MAX_IMPORTANCE_BATCHES = 1_000_000  # more than any task's training set holds (MNLI: 12,272 batches of 32)


@dataclass(kw_only=True)
class StructuredSettings:
    """structured tickets: whole heads and neurons"""

    structure: str = setting("unstructured", "what IMP prunes: single weights (the paper), or whole attention heads "
                                             "and/or feed-forward neurons; then the sparsity is the fraction of the "
                                             "heads and of the neurons removed (summary.csv's actual_sparsity: the "
                                             "fraction of prunable weights)", choices=tuple(STRUCTURES))
    importance: str = setting("magnitude", "how heads and neurons are ranked: magnitude, the L2 norm of a unit's "
                                           "weights; gradient, |dLoss/dgate| of a gate on each unit over "
                                           "--importance-batches training batches, normalised per layer (Michel et "
                                           "al. 2019)", choices=IMPORTANCES)
    rank_within: str = setting("model", "rank heads and neurons over the whole model, or within each layer, which "
                                        "then loses the same share: an evenly narrower model (on MiniLM at 50%%, "
                                        "1.89x faster than dense against 1.69x; benchmarks/README.md)",
                               choices=RANKING_SCOPES)
    importance_batches: int = setting(GRADIENT_BATCHES, "with --importance gradient: how many training batches, "
                                                        "the first in file order, the scores are summed over; 0: "
                                                        "all of them (a steadier ranking; results/README.md)")
    rank_on: str = setting("first_seed", "the trained model(s) the next mask is ranked on: the first seed's, as "
                                         "IMP prunes single weights, or every seed's, their scores averaged (a "
                                         "steadier ranking; results/README.md)", choices=RANKED_ON)

    def __post_init__(self):
        super().__post_init__()
        for name, unstructured_value in (("importance", "magnitude"), ("rank_within", "model"),
                                         ("rank_on", "first_seed")):
            check(self.structured or getattr(self, name) == unstructured_value,
                  f"{flag(name)} {getattr(self, name)} ranks heads and neurons: add {flag('structure')} "
                  f"heads_and_neurons (or heads, or neurons)")
        check(isinstance(self.importance_batches, int) and 0 <= self.importance_batches <= MAX_IMPORTANCE_BATCHES,
              f"{flag('importance_batches')} must be a whole number of batches from 0 (all of them) to "
              f"{MAX_IMPORTANCE_BATCHES:,}, not {self.importance_batches!r}")
        check(self.importance == "gradient" or self.importance_batches == GRADIENT_BATCHES,
              f"{flag('importance_batches')} counts the batches of the gradient ranking: add "
              f"{flag('importance')} gradient")

    @property
    def structured(self) -> bool:
        """True when IMP prunes whole heads and/or neurons rather than single weights."""
        return self.structure != "unstructured"


def prune_units(settings: StructuredSettings, task: Task, train_data, models: list, mask: Mask,
                sparsity: float | dict[str, int]) -> Mask:
    """Returns the mask pruned as a structured IMP run prunes: the least important heads and/or neurons, ranked as
    `settings` say on the round's trained models (the first seed's first), to the sparsity's share of each kind (or
    the exact counts of a dict)."""
    ranked_on = models if settings.rank_on == "every_seed" else models[:1]
    scores = [unit_importance(settings, task, train_data, model, mask) for model in ranked_on]
    importance = {kind: sum(score[kind] for score in scores) / len(scores) for kind in KINDS}
    return structured_prune(models[0], mask, sparsity, STRUCTURES[settings.structure], importance,
                            per_layer=settings.rank_within == "layer")


def unit_importance(settings: StructuredSettings, task: Task, train_data, model, mask: Mask) -> dict[str, torch.Tensor]:
    """Returns one trained model's importance of every head and neuron, as `settings` rank them."""
    if settings.importance == "magnitude":
        return magnitude_importance(model, mask)
    batch_size = settings.for_task(task).batch_size
    device = next(model.parameters()).device
    return gradient_importance(model, importance_batches(task, train_data, batch_size,
                                                         settings.importance_batches or None, device))


def ranking_caveat(settings: StructuredSettings) -> str | None:
    """Returns a line saying that the next masks rest on one draw (one trained model, a few batches), or None when
    they are ranked on every seed's model and, for the gradient, on the whole training set."""
    one_model = settings.rank_on == "first_seed"
    few_batches = settings.importance == "gradient" and settings.importance_batches > 0
    if not (settings.structured and (one_model or few_batches)):
        return None
    draw = " and ".join(part for part, applies in (
        ("one trained model (the first seed's)", one_model),
        (f"the first {settings.importance_batches} training batches", few_batches)) if applies)
    steadier = " ".join(option for option, applies in (
        (f"{flag('rank_on')} every_seed", one_model), (f"{flag('importance_batches')} 0", few_batches)) if applies)
    return (f"the next masks are ranked on {draw}: another seed, batch order or CPU ranks other units "
            f"(results/README.md, \"Structured tickets across mask draws\"); {steadier} ranks them more steadily")


def pruned_units(settings: StructuredSettings, mask: Mask, num_heads: int) -> dict[str, tuple[int, int]]:
    """Returns (pruned, total) of a structured mask for each kind of unit its run prunes."""
    units = Units.of_mask(mask, num_heads)
    return {kind: (units.num_pruned(kind), units.num_total(kind)) for kind in STRUCTURES[settings.structure]}


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
    num_heads = num_heads_of(model_or_sd, num_heads)
    units = Units.of_mask(mask, num_heads)
    importance = importance or magnitude_importance(model_or_sd, mask, num_heads)
    counts = target_sparsity if isinstance(target_sparsity, dict) else {
        kind: count_to_prune(target_sparsity, units.num_total(kind)) for kind in kinds}
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
            kept[kind] = keep_largest(scores.flatten(), count).view(scores.shape)
    return Units(**kept).expand(mask)


def _keep_largest_per_layer(scores: torch.Tensor, kept: torch.Tensor, share: float, kind: str) -> torch.Tensor:
    """Returns (L, units) bool keeping, in every layer, all but round(share x its units) of the lowest scores."""
    count = count_to_prune(share, scores.shape[1])  # every layer holds as many units of a kind
    for layer, already in enumerate((~kept).sum(1).tolist()):
        if count < already:
            raise MaskError(f"layer {layer} already prunes {already} {kind}, more than the {count} a per-layer "
                            f"share of {share:.3f} allows: prune it per layer from the start")
    return keep_in_each_layer(scores, share)


def keep_in_each_layer(scores: torch.Tensor, share: float) -> torch.Tensor:
    """Returns (L, units) bool keeping, in every layer (row), all but the round(share x units) lowest scores; ties
    go by position, lower first pruned."""
    return _keep_largest_in_rows(scores, [count_to_prune(share, scores.shape[1])] * len(scores))


def _keep_largest_in_rows(scores: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Returns (L, units) bool keeping all but the counts[l] lowest scores of each row l (ties: lower first pruned)."""
    return torch.stack([keep_largest(row, count) for row, count in zip(scores, counts)])


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
            kept[kind] = keep_largest(scores.flatten(), int(pruned.sum())).view(pruned.shape)
    return Units(**kept).expand(like)
