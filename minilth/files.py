"""Writing output files whole or not at all: every file goes to a temporary name, then is renamed.

A reader (or a resumed run) therefore never sees half a file: an interruption leaves either the
old file or none, plus at most a hidden temporary that the next write replaces.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yields a temporary path next to `path`; on success renames it to `path`, on failure removes it.

    The temporary keeps the suffix, so writers that choose a format by suffix (savefig) still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Writes a text file atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")


def save(obj, path: str | Path) -> None:
    """torch.save, atomically."""
    with atomic_path(path) as temp:
        torch.save(obj, temp)
