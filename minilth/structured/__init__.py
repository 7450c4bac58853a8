"""Structured tickets: IMP that prunes whole attention heads and feed-forward neurons, and models without them.

    units.py       which rows and columns a head or a neuron owns; Units.of_mask, Units.expand
    importance.py  how important each unit is: weight magnitude, or Michel et al.'s gradient score
    pruning.py     structured_prune (over the model or per layer), random structured masks, the IMP seam
    shrink.py      a physically smaller BERT with the masked model's outputs

`--structure heads_and_neurons` (StructuredSettings) makes ticket.py prune through `prune_units`.
"""
from .importance import gradient_importance, importance_batches, magnitude_importance, rank_agreement
from .pruning import (GRADIENT_BATCHES, IMPORTANCES, STRUCTURES, StructuredSettings, keep_in_each_layer, prune_units,
                      pruned_units, random_structured_mask, ranking_caveat, structured_prune, unit_importance)
from .shrink import shrink
from .units import KINDS, Units

__all__ = ["GRADIENT_BATCHES", "IMPORTANCES", "KINDS", "STRUCTURES", "StructuredSettings", "Units",
           "gradient_importance", "importance_batches", "keep_in_each_layer", "magnitude_importance", "prune_units",
           "pruned_units", "random_structured_mask", "rank_agreement", "ranking_caveat", "shrink", "structured_prune",
           "unit_importance"]
