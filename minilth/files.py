"""Writing output files whole or not at all: every file goes to a temporary name, then is renamed.

A reader (or a resumed run) therefore never sees half a file: an interruption leaves either the
old file or none, plus at most the hidden temporary `.{stem}.tmp{suffix}`, which the next write of
the same file reuses and replaces.

The temporary name depends on the file's name only, never on the process: torch.save records it
inside its zip, so identical content written twice gives identical bytes (sha256sum agrees).
Two processes writing the same file at once take turns: each holds a lock on the temporary
(flock, which the kernel releases when its holder dies, so a killed writer never blocks the next)
from creating it to renaming it. Every rename is of a whole file; the last one wins.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch

from .errors import MinilthError
from .scale import distributed

try:
    import fcntl
except ImportError:  # Windows has no flock: there, two processes writing one file at once may clash
    fcntl = None


def temporary_path(path: str | Path) -> Path:
    """Returns the hidden name `path` is written under before its rename: `.{stem}.tmp{suffix}`.

    The temporary keeps the suffix, so writers that choose a format by suffix (savefig) still work.
    """
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yields a temporary path next to `path`; on success renames it to `path`, on failure removes it.

    Under torchrun only rank 0 writes: the other ranks hold the same results and write to os.devnull.
    """
    if not distributed.is_writer():
        yield Path(os.devnull)
        return
    path = Path(path)
    if path.is_dir():  # checked first: the rename would fail only after the whole file is written
        raise MinilthError(f"{path} is a folder, where minilth writes a file; move the folder away, or give another "
                           f"--output")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_path(path)
    with _locked(temp):
        try:
            yield temp
            os.replace(temp, path)  # under the lock: no other writer is halfway through this temporary
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def _locked(temp: Path):
    """Holds an exclusive lock on the file named `temp` (created if absent) while the block runs.

    A writer that waited for the lock may find the name gone or pointing to a new file (the
    holder renamed or removed its temporary): it then locks the file now under that name.
    """
    while True:
        fd = os.open(temp, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, temp):
                yield
                return
        finally:
            os.close(fd)  # releases the lock


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def check_writable_folder(folder: str | Path, option: str = "--output") -> Path:
    """Returns the folder if results can be written into it (it exists or can be made); a one-line error naming it
    otherwise, so that a command fails before any work rather than after."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise MinilthError(f"{option} {folder} is a file, not a folder; give a folder")
    existing = next(parent for parent in [folder, *folder.parents] if parent.exists())
    try:  # a real write: permission bits do not bind root, nor tell of a read-only mount
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a folder")
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as error:
        raise MinilthError(f"{option} {folder} cannot be written ({existing}: {error.strerror or error}); give "
                           f"another folder") from None
    return folder


def write_text(path: str | Path, text: str) -> None:
    """Writes a text file atomically."""
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")


def save(obj, path: str | Path) -> None:
    """torch.save, atomically; identical objects give identical bytes for files of the same name."""
    with atomic_path(path) as temp:
        torch.save(obj, temp)
