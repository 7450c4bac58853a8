"""Batches of features with dynamic padding: each batch is padded to its own longest sequence.

A feature is a dict with list-of-int "input_ids", "token_type_ids", "attention_mask" and targets:
"labels" (an int class, a float score, or for MLM a list of token ids with -100 = ignored) or
"start_positions"/"end_positions" (SQuAD). Other numeric scalars (e.g. "example_index") travel
along as tensors so predictions can be mapped back to their examples.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch

from ..errors import MinilthError

IGNORE_INDEX = -100  # positions the loss skips (MLM labels of unmasked or padded tokens)
MEGA_BATCHES = 50  # group_by_length sorts within chunks of this many batches


class BatchError(MinilthError, ValueError):
    """Features that cannot be put into one batch."""


def collate(features: Sequence[dict], pad_id: int = 0, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Returns the features as tensors padded to the longest in the batch: sequences (B, T), scalars (B,).

    input_ids are padded with pad_id, token_type_ids and attention_mask with 0, list-valued labels
    with -100. Int scalars become long tensors, float scalars float32 (STS-B scores); keys whose
    values are neither numbers nor int lists (strings, None) are left out of the batch.
    `pad_to` pads every sequence to that fixed length instead (T = pad_to), as code that pads
    every feature to max_length does (the reference's SQuAD evaluation); longer ones are an error.
    """
    if not features:
        raise BatchError("cannot collate an empty batch")
    keys = list(features[0])
    for index, feature in enumerate(features):
        if list(feature) != keys:
            raise BatchError(f"feature {index} has keys {sorted(feature)}, feature 0 has {sorted(keys)}: "
                             "build every feature with the same reader")
    longest = max(len(feature["input_ids"]) for feature in features)
    if pad_to is not None and longest > pad_to:
        raise BatchError(f"a feature has {longest} tokens, more than pad_to={pad_to}: build the features with "
                         f"max_length {pad_to} or pad to a larger length")
    padding = {"input_ids": pad_id, "token_type_ids": 0, "attention_mask": 0}
    batch = {}
    for key in keys:
        values = [feature[key] for feature in features]
        first = values[0]
        if isinstance(first, (list, tuple)):
            batch[key] = _pad(values, padding.get(key, IGNORE_INDEX), pad_to)  # (B, T)
        elif isinstance(first, bool) or isinstance(first, (int, np.integer)):
            batch[key] = torch.tensor(values, dtype=torch.long)  # (B,)
        elif isinstance(first, (float, np.floating)):
            batch[key] = torch.tensor(values, dtype=torch.float32)  # (B,)
    return batch


def _pad(sequences: list, value: int, length: int | None = None) -> torch.Tensor:
    """Rows of int lists as one long tensor, right-padded with value to `length` (default: the longest)."""
    length = length or max(len(s) for s in sequences)
    out = np.full((len(sequences), length), value, dtype=np.int64)  # (B, T)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = sequence
    return torch.from_numpy(out)


def num_batches(num_features: int, batch_size: int, drop_last: bool = False) -> int:
    """Returns how many batches `batches` yields for this many features."""
    _check_batch_size(batch_size)
    return num_features // batch_size if drop_last else math.ceil(num_features / batch_size)


def batches(features: Sequence[dict], batch_size: int, shuffle: bool = False, seed: int = 0,
            group_by_length: bool = False, pad_id: int = 0, drop_last: bool = False,
            start: int = 0, pad_to: int | None = None) -> Iterator[dict]:
    """Yields collated batches (see `collate`, also for `pad_to`), in file order or shuffled reproducibly by seed.

    `start` skips the first batches of that order without collating them (a run resumed mid-epoch).

    group_by_length (for training) shuffles too, then sorts each chunk of 50 batches by length so a
    batch holds sequences of similar length (less padding), shuffles the order of the batches, and
    puts the batch with the longest sequence first so an out-of-memory error shows at step one.
    The order depends on seed alone (a numpy Generator, never the global RNG).
    """
    order = batch_indices([len(f["input_ids"]) for f in features], batch_size, shuffle=shuffle, seed=seed,
                          group_by_length=group_by_length, drop_last=drop_last)
    for indices in order[start:]:
        yield collate([features[i] for i in indices], pad_id=pad_id, pad_to=pad_to)


def batch_indices(lengths: Sequence[int], batch_size: int, shuffle: bool = False, seed: int = 0,
                  group_by_length: bool = False, drop_last: bool = False) -> list[np.ndarray]:
    """Returns the feature indices of each batch, in the order `batches` yields them."""
    _check_batch_size(batch_size)
    lengths = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths)) if (shuffle or group_by_length) else np.arange(len(lengths))
    if group_by_length:
        order = _sort_within_chunks(order, lengths, batch_size * MEGA_BATCHES)
    groups = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    if drop_last:
        groups = [g for g in groups if len(g) == batch_size]
    if group_by_length and groups:
        groups = [groups[i] for i in rng.permutation(len(groups))]
        longest = max(range(len(groups)), key=lambda i: lengths[groups[i]].max())
        groups[0], groups[longest] = groups[longest], groups[0]
    return groups


def _sort_within_chunks(order: np.ndarray, lengths: np.ndarray, chunk: int) -> np.ndarray:
    """The shuffled order with each chunk sorted longest first (stable, so ties keep the shuffle)."""
    pieces = []
    for start in range(0, len(order), chunk):
        piece = order[start:start + chunk]
        pieces.append(piece[np.argsort(-lengths[piece], kind="stable")])
    return np.concatenate(pieces) if pieces else order


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise BatchError(f"batch_size must be a positive integer, got {batch_size!r}")
