"""BertModel's forward, computed faster over the same parameters: the model's default execution.

It does what model.py's textbook forward does, layer by layer, with three changes that leave
the numbers of the real tokens as they are (tests/test_fast.py: to 1e-5 against the textbook
path and against transformers):

- only the real tokens are computed (PackedTokens, tokens.py), or the padded batch (PaddedTokens);
- dropout masks come from 16 random bits per element (dropout.py), attention from PyTorch's
  fused kernel when nothing is dropped;
- a classifier reads [CLS] alone, so with `first_token_only` the last layer takes queries,
  feed-forward and LayerNorms of [CLS] only (keys and values still come from every token):
  5/6 of that layer's work saved.
"""
from __future__ import annotations

import torch

from .dropout import dropout
from .tokens import PackedTokens, PaddedTokens, token_layout


def bert_forward(bert, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                 token_type_ids: torch.Tensor | None, first_token_only: bool = False, unpad: bool = True):
    """Returns (sequence_output, pooled_output or None) as BertModel.forward does.

    With `unpad`, padding positions of sequence_output are 0 (real tokens are as the textbook
    path computes them); with first_token_only, sequence_output is (B, 1, H).
    """
    B, T = input_ids.shape
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    positions = torch.arange(T, device=input_ids.device).expand(B, T)  # (B, T)
    tokens = token_layout(attention_mask, unpad=unpad)
    x = _embed(bert.embeddings, tokens.select(input_ids), tokens.select(token_type_ids), tokens.select(positions))
    last = len(bert.encoder.layer) - 1
    for index, layer in enumerate(bert.encoder.layer):
        x = _layer(layer, x, tokens, first_only=first_token_only and index == last)
    x = tokens.restore_first(x) if first_token_only else tokens.restore(x)  # (B, 1, H) or (B, T, H)
    return x, (bert.pooler(x) if bert.pooler is not None else None)


def _embed(embeddings, input_ids: torch.Tensor, token_type_ids: torch.Tensor, positions: torch.Tensor):
    """Returns word + segment + position embeddings, normalised and dropped out: (N, H) or (B, T, H)."""
    x = embeddings.word_embeddings(input_ids) + embeddings.token_type_embeddings(token_type_ids)
    x = x + embeddings.position_embeddings(positions)
    return dropout(embeddings.LayerNorm(x), embeddings.dropout.p, embeddings.training)


def _layer(layer, x: torch.Tensor, tokens: PaddedTokens | PackedTokens, first_only: bool) -> torch.Tensor:
    """Returns one transformer layer's output; with first_only, of each sequence's first token only."""
    attention = layer.attention.self
    heads = lambda t: t.unflatten(-1, (attention.num_heads, attention.head_size))  # noqa: E731  (..., nh, d)
    # [CLS] is sliced twice, residual first: backward then adds x's gradients in one fixed order
    residual = tokens.first(x) if first_only else x
    queries = tokens.first(x) if first_only else x
    q, k, v = heads(attention.query(queries)), heads(attention.key(x)), heads(attention.value(x))
    dropout_p = attention.dropout.p if layer.training else 0.0
    context = tokens.attend(q, k, v, dropout_p, first_only).flatten(-2)  # (..., nh d)
    x = _residual(layer.attention.output, context, residual)
    return _residual(layer.output, layer.intermediate(x), x)


def _residual(block, h: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """Returns LayerNorm(dropout(dense(h)) + residual): the end of the attention block and of the feed-forward."""
    return block.LayerNorm(dropout(block.dense(h), block.dropout.p, block.training) + residual)
