"""Where the tokens are: padded (B, T) or packed (N,). BertModel.forward picks a layout; every module
of model.py runs on it.

A padded batch spends the projections, feed-forward and LayerNorms, which are most of the work,
on padding too: a random RTE batch of 32 holds one 128-token pair and is half padding. Like
NVIDIA's BERT, MosaicBERT and ModernBERT, PackedTokens gathers the N real tokens into (N, H), so
everything but attention costs in proportion to real tokens; attention runs per group of
sequences of similar length, each padded only to its own longest. Both layouts give the layers
the same operations: select (gather the inputs), first (each sequence's [CLS]), attend (PyTorch's
fused attention; `fused` False asks the layers for the textbook formula instead), restore (back
to (B, T, H)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .dropout import attention


class PaddedTokens:
    """Every position of the (B, T) batch is computed; padding is only masked out of attention."""

    def __init__(self, attention_mask: torch.Tensor | None, fused: bool = True):
        self.attention_mask = attention_mask  # (B, T), 1 at real tokens, or None
        self.fused = fused  # attend() with PyTorch's fused kernel; False: the layers write the formula out
        self.key_mask = _key_mask(attention_mask) if fused else None  # (B, 1, 1, T) or None

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

    fused = True  # attention is always the fused kernel, one call per bucket of lengths

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


Tokens = PaddedTokens | PackedTokens


def token_layout(attention_mask: torch.Tensor | None, execution: str = "unpadded") -> Tokens:
    """Returns the layout an execution computes on (BertConfig.execution): PackedTokens for "unpadded" when
    something is padded, else PaddedTokens, with the textbook's attention for "textbook"."""
    if execution == "unpadded" and attention_mask is not None and not bool(attention_mask.all()):
        return PackedTokens(attention_mask)
    return PaddedTokens(attention_mask, fused=execution != "textbook")
