"""A structured ticket made physically smaller: a BERT without the pruned heads and neurons.

    small = shrink(model, mask)   # fewer heads per layer, a narrower feed-forward, the masked model's outputs
"""
from __future__ import annotations

import copy
import dataclasses

import torch

from ..model import BertLayer, BertPreTrainedModel
from ..prune import Mask, MaskError
from .units import ROLES, Units, encoder_of

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
    layers = encoder_of(small).layer
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
