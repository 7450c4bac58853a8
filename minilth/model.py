"""BERT in plain PyTorch: the config, the encoder and the task heads.

Parameter names are exactly Hugging Face's (and, through them, Google's), so a Hugging Face state
dict loads as it is and a pruning mask is keyed by the same names everywhere:
`bert.encoder.layer.3.attention.self.query.weight`, `classifier.weight`, `cls.predictions.bias`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointError


@dataclass
class BertConfig:
    """BERT's hyper-parameters, with Hugging Face's field names (Google's bert_config.json uses the same)."""

    vocab_size: int = 30522  # V, WordPiece vocabulary
    hidden_size: int = 768  # H
    num_hidden_layers: int = 12  # L
    num_attention_heads: int = 12  # nh; head size d = H / nh
    intermediate_size: int = 3072  # feed-forward width, 4H
    hidden_act: str = "gelu"  # "gelu" (erf, BERT's) or "gelu_new" (tanh approximation) or "relu"
    hidden_dropout_prob: float = 0.1  # dropout after embeddings, attention output and feed-forward
    attention_probs_dropout_prob: float = 0.1  # dropout on attention probabilities
    max_position_embeddings: int = 512  # longest sequence
    type_vocab_size: int = 2  # segment A / B
    initializer_range: float = 0.02  # std of the normal initialisation
    layer_norm_eps: float = 1e-12  # BERT's (TF's) LayerNorm epsilon
    pad_token_id: int = 0  # [PAD]
    unpad: bool = True  # compute on the real tokens only (PackedTokens); False: on the padded batch, as Hugging Face
    # A model with heads or feed-forward neurons removed (structured.shrink): the heads removed from
    # each layer, as original indices ({layer: [heads]}, transformers' convention, which loads it), and
    # each layer's feed-forward width (minilth's key; None: intermediate_size in every layer).
    pruned_heads: dict[int, list[int]] = field(default_factory=dict)
    intermediate_sizes: list[int] | None = None

    def __post_init__(self):
        # checked here, not where a value is first used: a config.json comes from anywhere, and a
        # string, a zero or a negative size would otherwise fail deep inside torch
        for name, value in vars(self).items():
            if name in SIZES and not (_is_whole(value) and value >= 1):
                raise CheckpointError(f"{name} must be a whole number of at least 1, got {value!r}")
            if name in PROBABILITIES and not (_is_real(value) and 0 <= value <= 1):
                raise CheckpointError(f"{name} must be a probability in [0, 1], got {value!r}")
            if name in POSITIVE_REALS and not (_is_real(value) and value > 0):
                raise CheckpointError(f"{name} must be a positive number, got {value!r}")
        if not (_is_whole(self.pad_token_id) and 0 <= self.pad_token_id < self.vocab_size):
            raise CheckpointError(f"pad_token_id must be a token id in [0, vocab_size {self.vocab_size}), "
                                  f"got {self.pad_token_id!r}")
        if self.hidden_size % self.num_attention_heads:
            raise CheckpointError(f"hidden_size {self.hidden_size} is not a multiple of "
                                  f"num_attention_heads {self.num_attention_heads}")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACTIVATIONS:
            raise CheckpointError(f"hidden_act {self.hidden_act!r} is not supported; use one of {sorted(ACTIVATIONS)}")
        self.pruned_heads = self._checked_pruned_heads()
        sizes = self.intermediate_sizes
        if sizes is not None and not (isinstance(sizes, list) and len(sizes) == self.num_hidden_layers
                                      and all(_is_whole(size) and size >= 0 for size in sizes)):
            raise CheckpointError(f"intermediate_sizes must be a list of num_hidden_layers ({self.num_hidden_layers}) "
                                  f"whole numbers of at least 0, one feed-forward width per layer, got {sizes!r}")

    def _checked_pruned_heads(self) -> dict[int, list[int]]:
        """Returns pruned_heads with int layer keys (JSON's are strings) and sorted heads, after checking them."""
        heads = self.pruned_heads
        if not isinstance(heads, dict):
            raise CheckpointError(f'pruned_heads must map layer indices to lists of removed heads, e.g. '
                                  f'{{"0": [2, 5]}}, got {heads!r}')
        checked = {}
        for key, removed in heads.items():
            layer = int(key) if isinstance(key, str) and key.isdigit() else key
            if not (_is_whole(layer) and 0 <= layer < self.num_hidden_layers):
                raise CheckpointError(f"pruned_heads has layer {key!r}, not a layer index in "
                                      f"[0, num_hidden_layers {self.num_hidden_layers})")
            heads_ok = isinstance(removed, list) and all(_is_whole(h) and 0 <= h < self.num_attention_heads
                                                         for h in removed)
            if not (heads_ok and len(set(removed)) == len(removed)):
                raise CheckpointError(f"pruned_heads of layer {layer} must be distinct head indices in "
                                      f"[0, num_attention_heads {self.num_attention_heads}), got {removed!r}")
            if removed:
                checked[layer] = sorted(removed)
        return checked

    def num_heads(self, layer: int) -> int:
        """Returns the number of attention heads layer `layer` has (fewer after heads were removed)."""
        return self.num_attention_heads - len(self.pruned_heads.get(layer, ()))

    def feedforward_size(self, layer: int) -> int:
        """Returns layer `layer`'s feed-forward width (narrower after neurons were removed)."""
        return self.intermediate_size if self.intermediate_sizes is None else self.intermediate_sizes[layer]

    @classmethod
    def from_dict(cls, values: dict) -> "BertConfig":
        """Returns the config from a Hugging Face config.json or Google bert_config.json dict; other keys are ignored."""
        if not isinstance(values, dict):
            raise CheckpointError(f"a BERT config is a JSON object of names and values, not a {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def from_json(cls, path: str | Path) -> "BertConfig":
        """Returns the config stored in a config.json / bert_config.json file."""
        try:
            values = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(f"cannot read the BERT config {path} ({error}): "
                                  "download the checkpoint's config again") from None
        try:
            return cls.from_dict(values)
        except CheckpointError as error:
            raise CheckpointError(f"{path}: {error}; correct the file or download the checkpoint's config "
                                  "again") from None

    def to_dict(self) -> dict:
        """Returns the config as a plain dict (what config.json holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def preset(cls, name: str) -> "BertConfig":
        """Returns the config of a known checkpoint: bert-base-uncased, bert-large-uncased or a small BERT.

        Small BERTs (Turc et al., 2019) are named like Google's: bert_uncased_L-4_H-256_A-4, for
        L in {2,4,6,8,10,12} and H in {128,256,512,768}, with H/64 heads and 4H feed-forward.
        """
        key = name.split("/")[-1].lower()
        if key in PRESETS:
            return cls(**PRESETS[key])
        small = _parse_small_bert(key)
        if small:
            layers, hidden = small
            return cls(hidden_size=hidden, num_hidden_layers=layers,
                       num_attention_heads=hidden // 64, intermediate_size=4 * hidden)
        raise CheckpointError(f"no preset config named '{name}'; known: {', '.join(preset_names())}")


SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
         "max_position_embeddings", "type_vocab_size")  # BertConfig fields that count something
PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob")
POSITIVE_REALS = ("initializer_range", "layer_norm_eps")


def _is_whole(value) -> bool:
    """True for an int; False for a bool, a float (768.0 included) or a string."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value) -> bool:
    """True for an int or float that is not a bool (NaN too: the range checks reject it)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


PRESETS = {
    "bert-base-uncased": {},
    "bert-large-uncased": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                               intermediate_size=4096),
}
SMALL_BERT_LAYERS = (2, 4, 6, 8, 10, 12)
SMALL_BERT_HIDDEN = (128, 256, 512, 768)


def _parse_small_bert(key: str) -> tuple[int, int] | None:
    """(L, H) of a small-BERT name such as 'bert_uncased_L-4_H-256_A-4', or None."""
    for layers in SMALL_BERT_LAYERS:
        for hidden in SMALL_BERT_HIDDEN:
            if key == f"bert_uncased_l-{layers}_h-{hidden}_a-{hidden // 64}":
                return layers, hidden
    return None


def preset_names() -> list[str]:
    """Returns every name BertConfig.preset knows."""
    small = [f"bert_uncased_L-{l}_H-{h}_A-{h // 64}" for l in SMALL_BERT_LAYERS for h in SMALL_BERT_HIDDEN]
    return list(PRESETS) + small


ACTIVATIONS = {
    "gelu": F.gelu,  # exact, erf-based: what BERT was trained with
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


@dataclass
class ModelOutput:
    """What a model returns: the loss when targets were given, and the logits of its head."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # classification (B, num_labels), MLM (B, T, V)
    start_logits: torch.Tensor | None = None  # question answering (B, T)
    end_logits: torch.Tensor | None = None  # question answering (B, T)
    seq_relationship_logits: torch.Tensor | None = None  # next-sentence prediction (B, 2)


# --- Dropout from 16 random bits per element ----------------------------------------------------
# torch's CPU dropout draws a float per element (aten::bernoulli_, on one thread): 14-19% of a
# training step. The same Bernoulli(1 - p) masks come from 16 random bits per element, four per
# 64-bit word of torch's generator (so torch.manual_seed still reproduces them): 39 ms instead of
# 254 ms per MiniLM step (benchmarks/README.md).

RANDOM_BITS = 16  # bits per element; the keep probability is a multiple of 2**-16


def dropout_keep_mask(shape: torch.Size, keep_prob: float, device: torch.device) -> torch.Tensor:
    """Returns a bool tensor of `shape`, each element True independently with probability ~keep_prob.

    The probability is round(keep_prob * 2**16) / 2**16: 58982 / 65536 = 0.8999939 for 0.9 (6.1e-6 low).
    """
    count = math.prod(shape)
    words = torch.empty((count + 3) // 4, dtype=torch.int64, device=device).random_(-2**63, None)  # 64 bits each
    bits = words.view(torch.int16)[:count].view(shape)  # uniform over [-2**15, 2**15)
    return bits < round(keep_prob * 2**RANDOM_BITS) - 2**(RANDOM_BITS - 1)


def dropout_multiplier(shape: torch.Size, p: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Returns what dropout multiplies by: 1/(1-p) where an element is kept, 0 where it is dropped."""
    # a float multiplier, not the bool mask: multiplying by a bool tensor converts it to float each time
    return dropout_keep_mask(shape, 1 - p, device).to(dtype).mul_(1 / (1 - p))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Returns x with each element zeroed with probability p and the others scaled by 1/(1-p) (in training)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p == 1.0:
        return F.dropout(x, p, training=True)  # CUDA's dropout is one fused kernel already
    return x * dropout_multiplier(x.shape, p, x.dtype, x.device)


class Dropout(nn.Dropout):
    """nn.Dropout with the cheaper mask of `dropout` (same distribution, no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
              dropout_p: float) -> torch.Tensor:
    """Returns softmax(q k^T / sqrt(d), masked keys excluded), dropped out, times v: (b, nh, L, d).

    q, k, v are (b, nh, L, d); key_mask (b, 1, 1, L) is True where a key may be attended, or None.
    """
    if dropout_p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, dropout_p=dropout_p)
    # On the CPU, SDPA with dropout leaves its flash kernel for a math path that draws its mask with
    # bernoulli_: this is that math, with the cheaper mask.
    scale = q.shape[-1] ** -0.5
    scores = q @ k.transpose(-2, -1)  # (b, nh, L, L)
    if key_mask is None:
        scores = scores * scale
    else:  # scale and mask in one pass (measured faster than masked_fill)
        scores = torch.add(_additive_mask(key_mask, scores.dtype), scores, alpha=scale)
    probs = scores.softmax(dim=-1)  # (b, nh, L, L)
    return (probs * dropout_multiplier(probs.shape, dropout_p, probs.dtype, probs.device)) @ v  # (b, nh, L, d)


def _additive_mask(key_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Returns 0 where key_mask is True and -inf where it is False, in dtype: (b, 1, 1, L)."""
    return torch.zeros(key_mask.shape, dtype=dtype, device=key_mask.device).masked_fill_(~key_mask, float("-inf"))


# --- Where the tokens are: padded (B, T) or packed (N,) --------------------------------------------
# A padded batch spends the projections, feed-forward and LayerNorms, which are most of the work,
# on padding too: a random RTE batch of 32 holds one 128-token pair and is half padding. Like
# NVIDIA's BERT, MosaicBERT and ModernBERT, PackedTokens gathers the N real tokens into (N, H), so
# everything but attention costs in proportion to real tokens; attention runs per group of
# sequences of similar length, each padded only to its own longest. Both layouts give the layers
# the same three operations: select (gather the inputs), attend, restore (back to (B, T, H)).


class PaddedTokens:
    """Every position of the (B, T) batch is computed; padding is only masked out of attention."""

    def __init__(self, attention_mask: torch.Tensor | None):
        self.key_mask = _key_mask(attention_mask)  # (B, 1, 1, T) or None

    def select(self, grid: torch.Tensor) -> torch.Tensor:
        return grid  # (B, T)

    def first(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :1]  # (B, 1, H)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float,
               first_only: bool = False) -> torch.Tensor:
        """Returns the attention output (B, T, nh, d) for q, k, v (B, T, nh, d); (B, 1, nh, d) for q (B, 1, nh, d)."""
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # each (B, nh, T, d)
        return attention(q, k, v, self.key_mask, dropout_p).transpose(1, 2)  # (B, T, nh, d)

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        return x  # (B, T, H)

    def restore_first(self, x: torch.Tensor) -> torch.Tensor:
        return x  # (B, 1, H)


def _key_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Boolean mask (B, 1, 1, T), True where a token may be attended; padding is never attended.

    None when nothing is padded, which lets scaled_dot_product_attention take its fastest kernels.
    """
    if attention_mask is None or bool(attention_mask.all()):
        return None
    return attention_mask[:, None, None, :].to(torch.bool)  # (B, 1, 1, T)


@dataclass
class LengthBucket:
    """Sequences of similar length, attended to in one call, each padded to the longest of them."""

    start: int  # first row of the packed tensor (sequences are packed longest first)
    stop: int
    first_sequence: int  # its first sequence, counted longest first
    num_sequences: int  # b
    length: int  # L, the longest
    slots: torch.Tensor | None  # (stop - start,) each token's row in the (b * L) grid; None when none is shorter
    key_mask: torch.Tensor | None  # (b, 1, 1, L), True at real tokens; None when none is shorter

    def pad(self, packed: torch.Tensor) -> torch.Tensor:
        """Returns this bucket's tokens of packed (N, nh, d) as a zero-padded grid (b, nh, L, d)."""
        x = packed[self.start:self.stop]  # (n, nh, d)
        if self.slots is not None:
            x = x.new_zeros(self.num_sequences * self.length, *x.shape[1:]).index_copy(0, self.slots, x)
        return x.unflatten(0, (self.num_sequences, self.length)).transpose(1, 2)  # (b, nh, L, d)

    def firsts(self, packed_firsts: torch.Tensor) -> torch.Tensor:
        """Returns this bucket's rows of (B', nh, d), one per sequence, as (b, nh, 1, d)."""
        return packed_firsts[self.first_sequence:self.first_sequence + self.num_sequences].unsqueeze(2)

    def unpad(self, grid: torch.Tensor) -> torch.Tensor:
        """Returns the real tokens of a grid (b, nh, L, d) as (n, nh, d), in packed order."""
        x = grid.transpose(1, 2).flatten(0, 1)  # (b * L, nh, d)
        return x if self.slots is None else x.index_select(0, self.slots)  # (n, nh, d)


BUCKET_MIN_FILL = 0.75  # a bucket takes sequences at least this fraction of its longest


def length_buckets(lengths: list[int], device: torch.device, min_fill: float = BUCKET_MIN_FILL) -> list[LengthBucket]:
    """Returns buckets over sequences sorted longest first; empty sequences are left out."""
    buckets, first, start = [], 0, 0
    while first < len(lengths) and lengths[first] > 0:
        longest = lengths[first]
        last = first
        while last < len(lengths) and lengths[last] > 0 and lengths[last] >= min_fill * longest:
            last += 1
        group = torch.tensor(lengths[first:last])  # (b,)
        positions = torch.arange(longest)  # (L,)
        real = positions[None, :] < group[:, None]  # (b, L)
        padded = bool((group < longest).any())
        stop = start + int(group.sum())
        buckets.append(LengthBucket(
            start, stop, first, last - first, longest,
            slots=real.flatten().nonzero().squeeze(1).to(device) if padded else None,
            key_mask=real[:, None, None, :].to(device) if padded else None))
        first, start = last, stop
    return buckets


class PackedTokens:
    """Only the N real tokens are computed, packed into (N, H) rows, sequence after sequence, longest first."""

    def __init__(self, attention_mask: torch.Tensor):
        B, T = attention_mask.shape
        real = attention_mask.bool()  # (B, T)
        lengths = real.sum(1)  # (B,)
        order = torch.sort(lengths, descending=True, stable=True).indices  # (B,)
        rows, columns = real[order].nonzero(as_tuple=True)  # (N,) each
        self.grid_shape = (B, T)
        self.token_index = order[rows] * T + columns  # (N,) each packed token's place in the flat (B * T) grid
        sorted_lengths = lengths[order]  # (B,)
        self.buckets = length_buckets(sorted_lengths.tolist(), attention_mask.device)
        nonempty = int((sorted_lengths > 0).sum())  # B'; empty sequences come last
        self.first_rows = (sorted_lengths.cumsum(0) - sorted_lengths)[:nonempty]  # (B',) each sequence's first row
        self.first_owner = order[:nonempty]  # (B',) the batch row of each

    def select(self, grid: torch.Tensor) -> torch.Tensor:
        """Returns the real tokens' entries of a (B, T) tensor: (N,)."""
        return grid.flatten()[self.token_index]  # (N,)

    def first(self, x: torch.Tensor) -> torch.Tensor:
        """Returns each non-empty sequence's first token of packed (N, H): (B', H)."""
        return x[self.first_rows]  # (B', H)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float,
               first_only: bool = False) -> torch.Tensor:
        """Returns the attention output (N, nh, d) for q, k, v (N, nh, d); a token sees its own sequence only.

        With first_only, q is (B', nh, d), one query per sequence, and so is the output.
        """
        outputs = []
        for bucket in self.buckets:
            queries = bucket.firsts(q) if first_only else bucket.pad(q)  # (b, nh, 1 or L, d)
            context = attention(queries, bucket.pad(k), bucket.pad(v), bucket.key_mask, dropout_p)
            outputs.append(context.squeeze(2) if first_only else bucket.unpad(context))  # (b or n, nh, d)
        return torch.cat(outputs)  # (N or B', nh, d)

    def restore(self, x: torch.Tensor) -> torch.Tensor:
        """Returns packed (N, H) as (B, T, H), zeros at padding."""
        B, T = self.grid_shape
        return x.new_zeros(B * T, x.shape[-1]).index_copy(0, self.token_index, x).view(B, T, -1)  # (B, T, H)

    def restore_first(self, x: torch.Tensor) -> torch.Tensor:
        """Returns first tokens (B', H) as (B, 1, H), in batch order (zeros for an empty sequence)."""
        B, _ = self.grid_shape
        return x.new_zeros(B, x.shape[-1]).index_copy(0, self.first_owner, x).unsqueeze(1)  # (B, 1, H)


def token_layout(attention_mask: torch.Tensor | None, unpad: bool) -> PaddedTokens | PackedTokens:
    """Returns PackedTokens when asked to unpad and something is padded, else PaddedTokens."""
    if unpad and attention_mask is not None and not bool(attention_mask.all()):
        return PackedTokens(attention_mask)
    return PaddedTokens(attention_mask)


class BertEmbeddings(nn.Module):
    """Word + segment + position embeddings, then LayerNorm and dropout."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)  # HF/TF name, kept for checkpoints
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        """Returns the embedded tokens: (B, T, H) from (B, T) ids, or (N, H) from packed (N,) ids."""
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)  # (..., H)
        x = x + self.position_embeddings(position_ids)  # (..., H)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention; Q, K and V keep separate matrices, as the checkpoints do.

    (Three matrix multiplies measured faster than one over the concatenated weights when training.)
    `tokens` (PaddedTokens or PackedTokens) says how the tokens are laid out and who attends to whom.
    """

    def __init__(self, cfg: BertConfig, num_heads: int):
        super().__init__()
        H = cfg.hidden_size
        self.num_heads, self.head_size = num_heads, H // cfg.num_attention_heads  # nh (this layer's), d
        self.query = nn.Linear(H, num_heads * self.head_size)
        self.key = nn.Linear(H, num_heads * self.head_size)
        self.value = nn.Linear(H, num_heads * self.head_size)
        self.dropout_p = cfg.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, tokens: "PaddedTokens | PackedTokens", first_only: bool = False) -> torch.Tensor:
        """Returns the attention output of every token, or with first_only of each sequence's first token only."""
        heads = lambda t: t.unflatten(-1, (self.num_heads, self.head_size))  # noqa: E731  (..., nh d) -> (..., nh, d)
        queries = tokens.first(x) if first_only else x
        q, k, v = heads(self.query(queries)), heads(self.key(x)), heads(self.value(x))  # (B, T, nh, d) or (N, nh, d)
        dropout_p = self.dropout_p if self.training else 0.0
        context = tokens.attend(q, k, v, dropout_p, first_only)  # (B, T, nh, d) or (N, nh, d); first_only (B, 1, nh, d)
        return context.flatten(-2)  # (..., nh d): H unless heads were removed


class BertSelfOutput(nn.Module):
    """Attention output projection (from the heads' nh x d values to H), dropout, residual and LayerNorm."""

    def __init__(self, cfg: BertConfig, in_features: int):
        super().__init__()
        self.dense = nn.Linear(in_features, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.hidden_dropout_prob)

    def forward(self, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(h)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig, num_heads: int):
        super().__init__()
        self.self = BertSelfAttention(cfg, num_heads)  # `self.self`: the checkpoint's name (attention.self.query)
        self.output = BertSelfOutput(cfg, num_heads * self.self.head_size)

    def forward(self, x: torch.Tensor, tokens: "PaddedTokens | PackedTokens", first_only: bool = False) -> torch.Tensor:
        residual = tokens.first(x) if first_only else x
        return self.output(self.self(x, tokens, first_only), residual)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig, width: int):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, width)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))  # (B, T, I) or (N, I); I = 4H unless neurons were removed


class BertOutput(BertSelfOutput):
    """Feed-forward down-projection (from the layer's I neurons to H), dropout, residual and LayerNorm."""


class BertLayer(nn.Module):
    """One transformer layer; its number of heads and feed-forward width come from the config (structured pruning
    may leave each layer with its own)."""

    def __init__(self, cfg: BertConfig, index: int):
        super().__init__()
        with warnings.catch_warnings():  # a layer left with no heads (or neurons) has empty matrices: nothing to init
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            self.attention = BertAttention(cfg, cfg.num_heads(index))
            self.intermediate = BertIntermediate(cfg, cfg.feedforward_size(index))
            self.output = BertOutput(cfg, cfg.feedforward_size(index))

    def forward(self, x: torch.Tensor, tokens: "PaddedTokens | PackedTokens", first_only: bool = False) -> torch.Tensor:
        x = self.attention(x, tokens, first_only)
        return self.output(self.intermediate(x), x)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg, index) for index in range(cfg.num_hidden_layers))

    def forward(self, x: torch.Tensor, tokens: "PaddedTokens | PackedTokens", first_only: bool = False) -> torch.Tensor:
        """Returns the last layer's output; with first_only, of each sequence's first token ([CLS]) only.

        A classifier reads [CLS] alone, so its last layer needs keys and values from every token
        but queries, feed-forward and LayerNorms for [CLS] only: 5/6 of that layer's work saved.
        """
        for index, layer in enumerate(self.layer):
            x = layer(x, tokens, first_only=first_only and index == len(self.layer) - 1)
        return x


class BertPooler(nn.Module):
    """tanh(W h_[CLS] + b): the sentence vector the classification head reads."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(sequence[:, 0]))  # (B, H)


class BertPreTrainedModel(nn.Module):
    """Shared by every model: BERT's initialisation (normal, std 0.02; zero bias; LayerNorm 1/0)."""

    unused_tensors: tuple[str, ...] = ()  # parameters the head never reads (no gradient reaches them)

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.config = cfg

    def init_weights(self) -> None:
        """Initialises every parameter as BERT does (normal weights, zero biases, unit LayerNorm gains).

        A tied MLM decoder needs nothing more: it is the word-embedding tensor itself, not a copy.
        """
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, BertLMPredictionHead):
                nn.init.zeros_(module.bias)


class BertModel(BertPreTrainedModel):
    """The encoder: embeddings, L transformer layers and (optionally) the pooler."""

    def __init__(self, cfg: BertConfig, add_pooling_layer: bool = True):
        super().__init__(cfg)
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg) if add_pooling_layer else None
        self.init_weights()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, first_token_only: bool = False):
        """Returns (sequence_output (B, T, H), pooled_output (B, H) or None without a pooler).

        With config.unpad (the default) only the real tokens are computed and sequence_output is 0
        at padding positions; without it, padding positions hold what Hugging Face's BERT gives.
        Real tokens get the same numbers either way. With first_token_only, the last layer computes
        the first position only and sequence_output is (B, 1, H): all a classifier reads.
        """
        B, T = input_ids.shape
        if T > self.embeddings.position_embeddings.num_embeddings:
            raise ValueError(f"sequence of {T} tokens is longer than max_position_embeddings "
                             f"{self.embeddings.position_embeddings.num_embeddings}: truncate it")
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(T, device=input_ids.device).expand(B, T)  # (B, T)
        tokens = token_layout(attention_mask, unpad=self.config.unpad)
        x = self.embeddings(tokens.select(input_ids), tokens.select(token_type_ids), tokens.select(positions))
        x = self.encoder(x, tokens, first_only=first_token_only)
        x = tokens.restore_first(x) if first_token_only else tokens.restore(x)  # (B, 1, H) or (B, T, H)
        return x, (self.pooler(x) if self.pooler is not None else None)


class BertForSequenceClassification(BertPreTrainedModel):
    """Pooled [CLS] -> dropout -> linear. num_labels = 1 is regression (STS-B) with a mean squared error."""

    def __init__(self, cfg: BertConfig, num_labels: int = 2):
        super().__init__(cfg)
        self.num_labels = num_labels
        self.bert = BertModel(cfg)
        self.dropout = Dropout(cfg.hidden_dropout_prob)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None) -> ModelOutput:
        _, pooled = self.bert(input_ids, attention_mask, token_type_ids, first_token_only=True)
        logits = self.classifier(self.dropout(pooled))  # (B, num_labels)
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
        return ModelOutput(loss=loss, logits=logits)


# UNUSED_POOLER. Hugging Face's QA and MLM models have no pooler. The paper's code keeps BERT's
# pooler in them, unused, and prunes it with the encoder (VITA-Group/BERT-Tickets LT_squad.py:107,
# LT_pretrain.py:164): so every task's sparsity is over the same 73 matrices (85,524,480 weights
# in BERT-base), and the SQuAD and MLM rows of the paper use that denominator. minilth does the
# same; `--keep-pooler` leaves the pooler out of the prunable set on every task (72 matrices).


class BertForQuestionAnswering(BertPreTrainedModel):
    """A linear layer scores every token as the answer's start and end (SQuAD)."""

    unused_tensors = ("bert.pooler.dense.weight", "bert.pooler.dense.bias")  # see UNUSED_POOLER

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg)
        self.bert = BertModel(cfg)  # its pooler is unused, but prunable (UNUSED_POOLER above)
        self.qa_outputs = nn.Linear(cfg.hidden_size, 2)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                start_positions=None, end_positions=None) -> ModelOutput:
        sequence, _ = self.bert(input_ids, attention_mask, token_type_ids)
        start_logits, end_logits = self.qa_outputs(sequence).unbind(-1)  # each (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            # positions outside the window are ignored, as in BERT's run_squad
            T = start_logits.shape[1]
            start_loss = F.cross_entropy(start_logits, start_positions.clamp(0, T), ignore_index=T)
            end_loss = F.cross_entropy(end_logits, end_positions.clamp(0, T), ignore_index=T)
            loss = (start_loss + end_loss) / 2
        return ModelOutput(loss=loss, start_logits=start_logits, end_logits=end_logits)


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.act = ACTIVATIONS[cfg.hidden_act]
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class BertLMPredictionHead(nn.Module):
    """Transform, then a decoder whose weight IS the word-embedding matrix (tied), plus a bias per token."""

    def __init__(self, cfg: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.transform = BertPredictionHeadTransform(cfg)
        self.word_embeddings = [word_embeddings]  # a list keeps it out of this module's parameters
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.transform(x), self.word_embeddings[0].weight, self.bias)  # (B, T, V)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, cfg: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.predictions = BertLMPredictionHead(cfg, word_embeddings)


class BertForMaskedLM(BertPreTrainedModel):
    """Masked-language modelling: predict the original token at every masked position (labels -100 elsewhere).

    Unlike Hugging Face's, it keeps BERT's pooler, which the MLM objective never reads (UNUSED_POOLER).
    """

    unused_tensors = ("bert.pooler.dense.weight", "bert.pooler.dense.bias")  # see UNUSED_POOLER

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg)
        self.bert = BertModel(cfg)  # its pooler is unused, but prunable (UNUSED_POOLER above)
        self.cls = BertOnlyMLMHead(cfg, self.bert.embeddings.word_embeddings)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None) -> ModelOutput:
        sequence, _ = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.cls.predictions(sequence)  # (B, T, V)
        loss = None if labels is None else F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return ModelOutput(loss=loss, logits=logits)


class BertPreTrainingHeads(BertOnlyMLMHead):
    def __init__(self, cfg: BertConfig, word_embeddings: nn.Embedding):
        super().__init__(cfg, word_embeddings)
        self.seq_relationship = nn.Linear(cfg.hidden_size, 2)


class BertForPreTraining(BertPreTrainedModel):
    """BERT's pre-training heads: masked-language modelling and next-sentence prediction."""

    def __init__(self, cfg: BertConfig):
        super().__init__(cfg)
        self.bert = BertModel(cfg)
        self.cls = BertPreTrainingHeads(cfg, self.bert.embeddings.word_embeddings)
        self.init_weights()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                labels=None, next_sentence_label=None) -> ModelOutput:
        sequence, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        logits = self.cls.predictions(sequence)  # (B, T, V)
        nsp_logits = self.cls.seq_relationship(pooled)  # (B, 2)
        loss = None
        if labels is not None and next_sentence_label is not None:
            loss = (F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
                    + F.cross_entropy(nsp_logits, next_sentence_label))
        return ModelOutput(loss=loss, logits=logits, seq_relationship_logits=nsp_logits)


HEADS = {
    "base": BertModel,
    "classification": BertForSequenceClassification,
    "regression": BertForSequenceClassification,
    "span": BertForQuestionAnswering,
    "mlm": BertForMaskedLM,
    "pretraining": BertForPreTraining,
}


def build_model(cfg: BertConfig, head: str = "base", num_labels: int = 2) -> BertPreTrainedModel:
    """Returns a freshly initialised model with the given head (see HEADS)."""
    if head not in HEADS:
        raise ValueError(f"unknown head '{head}'; use one of {', '.join(HEADS)}")
    if head == "regression":
        return BertForSequenceClassification(cfg, num_labels=1)
    if head == "classification":
        return BertForSequenceClassification(cfg, num_labels=num_labels)
    return HEADS[head](cfg)


def count_parameters(model: nn.Module) -> int:
    """Returns the number of parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())
