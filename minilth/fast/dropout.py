"""Dropout masks from 16 random bits per element (model.Dropout draws them), and attention that uses them.

torch's CPU dropout draws a float per element (aten::bernoulli_, on one thread): 14-19% of a
training step. The same Bernoulli(1 - p) masks come from 16 random bits per element, four per
64-bit word of torch's generator (so torch.manual_seed still reproduces them): 39 ms instead of
254 ms per MiniLM step (benchmarks/README.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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
