"""A checkpoint's config: read from config.json (Hugging Face) or bert_config.json (Google), checked, or known.

    config = read_config("path/to/config.json")
    config = preset_config("bert_uncased_L-4_H-256_A-4")   # Google's small BERTs, bert-base, bert-large

Every value of a file is checked before a model is built from it: a string, a zero or a
vocabulary of 10^10 tokens would otherwise fail deep inside torch, or try to allocate terabytes.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import CheckpointError
from ..model import ACTIVATIONS, BertConfig

SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
         "max_position_embeddings", "type_vocab_size")  # fields that count something
PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob")
POSITIVE_REALS = ("initializer_range", "layer_norm_eps")
MAX_PARAMETERS = 10**10  # 25x BERT-large; above this a config is a mistake, and would need 40 GB in fp32


def read_config(path: str | Path) -> BertConfig:
    """Returns the config stored in a config.json / bert_config.json file; CheckpointError naming the file."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read the BERT config {path} ({type(error).__name__}): "
                              "download the checkpoint's config again") from None
    try:
        return config_from_dict(values)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}; correct the file or download the checkpoint's config again") from None


def config_from_dict(values: dict) -> BertConfig:
    """Returns the config a config.json dict describes, every value checked; other keys are ignored."""
    if not isinstance(values, dict):
        raise CheckpointError(f"a BERT config is a JSON object of names and values, not a {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(BertConfig)} - {"execution"}
    values = {k: v for k, v in values.items() if k in known}
    for name in SIZES:
        _require(name not in values or (_is_whole(values[name]) and values[name] >= 1), name,
                 "a whole number of at least 1", values)
    for name in PROBABILITIES:
        _require(name not in values or (_is_real(values[name]) and 0 <= values[name] <= 1), name,
                 "a probability in [0, 1]", values)
    for name in POSITIVE_REALS:
        _require(name not in values or (_is_real(values[name]) and values[name] > 0), name, "a positive number", values)
    act = values.get("hidden_act", "gelu")
    _require(isinstance(act, str) and act in ACTIVATIONS, "hidden_act", f"one of {', '.join(ACTIVATIONS)}", values)
    heads, hidden = values.get("num_attention_heads", 12), values.get("hidden_size", 768)
    if hidden % heads:
        raise CheckpointError(f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
    config = BertConfig(**values)
    _require(_is_whole(config.pad_token_id) and 0 <= config.pad_token_id < config.vocab_size, "pad_token_id",
             f"a token id below vocab_size {config.vocab_size}", values)
    config.pruned_heads = _checked_pruned_heads(config)
    sizes = config.intermediate_sizes
    _require(sizes is None or (isinstance(sizes, list) and len(sizes) == config.num_hidden_layers
                               and all(_is_whole(size) and size >= 0 for size in sizes)), "intermediate_sizes",
             f"a list of num_hidden_layers ({config.num_hidden_layers}) whole numbers of at least 0", values)
    if parameter_count(config) > MAX_PARAMETERS:
        raise CheckpointError(f"this config describes a model of {parameter_count(config):.1e} parameters (vocab_size "
                              f"{config.vocab_size}, hidden_size {config.hidden_size}, {config.num_hidden_layers} "
                              f"layers), far beyond any BERT: check its sizes")
    return config


def parameter_count(config: BertConfig) -> int:
    """Returns about how many parameters a model of this config holds (embeddings and encoder)."""
    H, I = config.hidden_size, config.intermediate_size
    embeddings = (config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * H
    return embeddings + config.num_hidden_layers * (4 * H * H + 2 * H * I)


def _checked_pruned_heads(config: BertConfig) -> dict[int, list[int]]:
    """Returns pruned_heads with int layer keys (JSON's are strings) and sorted heads, after checking them."""
    heads = config.pruned_heads
    _require(isinstance(heads, dict), "pruned_heads", 'a map of layers to removed heads, e.g. {"0": [2, 5]}', heads)
    checked = {}
    for key, removed in heads.items():
        layer = int(key) if isinstance(key, str) and key.isdigit() else key
        _require(_is_whole(layer) and 0 <= layer < config.num_hidden_layers, "pruned_heads",
                 f"keyed by layer indices below num_hidden_layers {config.num_hidden_layers}", heads)
        _require(isinstance(removed, list) and len(set(removed)) == len(removed)
                 and all(_is_whole(h) and 0 <= h < config.num_attention_heads for h in removed), "pruned_heads",
                 f"lists of distinct heads below num_attention_heads {config.num_attention_heads}", heads)
        if removed:
            checked[layer] = sorted(removed)
    return checked


def _require(condition: bool, name: str, what: str, values) -> None:
    if not condition:
        shown = values.get(name) if isinstance(values, dict) and name in values else values
        raise CheckpointError(f"{name} must be {what}, got {shown!r}")


def _is_whole(value) -> bool:
    """True for an int; False for a bool, a float (768.0 included) or a string."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    """True for an int or float that is not a bool (NaN too: the range checks reject it)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- configs known by name -------------------------------------------------------------------------

ARCHITECTURES = {  # BERT shapes known by name: bert-base-uncased is BertConfig's defaults
    "bert-base-uncased": {},
    "bert-large-uncased": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
SMALL_BERT_LAYERS = (2, 4, 6, 8, 10, 12)
SMALL_BERT_HIDDEN = (128, 256, 512, 768)


def preset_config(name: str) -> BertConfig:
    """Returns the config of a known checkpoint: bert-base-uncased, bert-large-uncased or a small BERT.

    Small BERTs (Turc et al., 2019) are named like Google's: bert_uncased_L-4_H-256_A-4, for
    L in {2,4,6,8,10,12} and H in {128,256,512,768}, with H/64 heads and 4H feed-forward.
    """
    key = name.split("/")[-1].lower()
    if key in ARCHITECTURES:
        return BertConfig(**ARCHITECTURES[key])
    for layers in SMALL_BERT_LAYERS:
        for hidden in SMALL_BERT_HIDDEN:
            if key == f"bert_uncased_l-{layers}_h-{hidden}_a-{hidden // 64}":
                return BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                                  intermediate_size=4 * hidden)
    raise CheckpointError(f"no preset config named '{name}'; known: {', '.join(preset_names())}")


def preset_names() -> list[str]:
    """Returns every name preset_config knows."""
    small = [f"bert_uncased_L-{l}_H-{h}_A-{h // 64}" for l in SMALL_BERT_LAYERS for h in SMALL_BERT_HIDDEN]
    return list(ARCHITECTURES) + small
