"""Mask files: names, shapes and one bit per weight (np.packbits), written whole or not at all.

    save_mask(mask, "runs/stsb/rounds/round_02/mask.pt")
    mask = load_mask("runs/stsb/rounds/round_02/mask.pt")

A damaged, truncated or foreign file is a MaskError naming the file, never a traceback, and
loading never unpickles code (torch.load with weights_only).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from .. import files
from ..prune import Mask, MaskError
from ..schemas import MASK_FILE, MASK_FILE_FORMAT, FileError, read_torch

MASK_FILE_VERSION = 1


def save_mask(mask: Mask, path: str | Path) -> Path:
    """Returns the path written: the mask's names, shapes and bits, atomically."""
    path = Path(path)
    payload = {
        "format": MASK_FILE_FORMAT,
        "version": MASK_FILE_VERSION,
        "names": mask.names(),
        "shapes": [list(flag.shape) for flag in mask.flags.values()],
        "num_kept": [int(torch.count_nonzero(flag)) for flag in mask.flags.values()],  # checked on load
        "packed": [torch.from_numpy(np.packbits(flag.numpy().reshape(-1))) for flag in mask.flags.values()],
    }
    files.save(payload, path)
    return path


def load_mask(path: str | Path) -> Mask:
    """Returns the mask saved at `path` by save_mask; MaskError for a missing, damaged or foreign file."""
    path = Path(path)
    if not path.exists():
        raise MaskError(f"mask file {path} does not exist")
    try:
        payload = read_torch(path, MASK_FILE)
    except FileError as error:
        raise MaskError(f"{error}; it is not a readable minilth mask file") from None
    if payload["version"] != MASK_FILE_VERSION:
        raise MaskError(f"{path} has mask format version {payload['version']}, this minilth reads "
                        f"{MASK_FILE_VERSION}; re-create it with this version")
    try:
        return Mask(dict(_unpacked(payload, path)))
    except (TypeError, ValueError, RuntimeError) as error:
        if isinstance(error, MaskError):
            raise
        raise MaskError(f"{path} is damaged ({type(error).__name__})") from None


def mask_digest(mask: Mask) -> str:
    """Returns a short sha256 of the mask's names and bits: the same mask gives the same digest."""
    digest = hashlib.sha256()
    for name, flag in mask.items():
        digest.update(name.encode())
        digest.update(np.packbits(flag.numpy().reshape(-1)).tobytes())
    return digest.hexdigest()[:16]


def _unpacked(payload: dict, path: Path):
    """Yields (name, bool tensor) of each entry, checking its size and its count of kept weights."""
    for name, shape, kept, packed in zip(payload["names"], payload["shapes"], payload["num_kept"], payload["packed"],
                                         strict=True):
        numel = int(np.prod(shape))
        if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8 or packed.numel() != (numel + 7) // 8:
            raise MaskError(f"{path} is damaged: entry '{name}' has the wrong size")
        flag = torch.from_numpy(np.unpackbits(packed.numpy(), count=numel).astype(bool)).reshape(shape)
        if int(torch.count_nonzero(flag)) != kept:
            raise MaskError(f"{path} is damaged: entry '{name}' has {int(torch.count_nonzero(flag))} kept weights, "
                            f"expected {kept}")
        yield name, flag
