"""A local data mirror built from tests/fixtures: the files the official sources serve, by the same names.

    with serve_data_mirror(monkeypatch, tmp_path) as server:   # MINILTH_DATA_URL points at it
        load_dataset("rte", tmp_path / "data" / "glue", "dev", tokenizer)   # downloaded from the mirror

GLUE task zips hold the samples of tests/fixtures/glue; MRPC's MSR files are rebuilt from its
samples so that minilth's MRPC builder gives them back byte for byte; SQuAD is squad_tiny.json;
WikiText-103's zip holds tests/fixtures/wikitext. minilth checks every download against the
official sha256 digests, which these files cannot match: serve_data_mirror sets the digests
to the mirror's own, as a mirror of the real files would need no change.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import sys
import zipfile
from pathlib import Path

from http_server import serve

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
SCRIPTS = TESTS.parent / "data_scripts"


def zip_bytes(members: dict[str, bytes | str]) -> bytes:
    """A zip archive holding the given members (name -> contents)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def glue_archive(task: str) -> bytes:
    """The task's zip as GLUE serves it: one top folder of the task's name holding its files."""
    folder = FIXTURES / "glue" / task
    return zip_bytes({f"{task}/{path.name}": path.read_bytes() for path in sorted(folder.iterdir())})


def mrpc_sources() -> dict[str, bytes]:
    """msr_paraphrase_{train,test}.txt and mrpc_dev_ids.tsv from which MRPC's samples are rebuilt."""
    train = (FIXTURES / "glue" / "MRPC" / "train.tsv").read_bytes().splitlines(keepends=True)
    dev = (FIXTURES / "glue" / "MRPC" / "dev.tsv").read_bytes().splitlines(keepends=True)
    dev_ids = b"".join(b"\t".join(row.split(b"\t")[1:3]) + b"\n" for row in dev[1:])
    return {"msr_paraphrase_train.txt": b"".join(train + dev[1:]),  # the MSR file holds train and dev pairs
            "msr_paraphrase_test.txt": b"".join(dev),
            "mrpc_dev_ids.tsv": dev_ids}


def wikitext_archive() -> bytes:
    """wikitext-103-raw-v1.zip holding the hand-written corpus of tests/fixtures/wikitext."""
    folder = FIXTURES / "wikitext"
    return zip_bytes({f"wikitext-103-raw/{path.name}": path.read_bytes() for path in sorted(folder.glob("*.raw"))})


def mirror_files() -> dict[str, bytes]:
    """Every file of the mirror, by its official name."""
    from minilth.data.sources import GLUE_ARCHIVES

    squad = (FIXTURES / "squad_tiny.json").read_bytes()
    glue = {archive: glue_archive(task) for task, archive in GLUE_ARCHIVES.items()
            if (FIXTURES / "glue" / task).is_dir()}
    return {**glue, **mrpc_sources(), "train-v1.1.json": squad, "dev-v1.1.json": squad,
            "wikitext-103-raw-v1.zip": wikitext_archive()}


def digests(files: dict[str, bytes]) -> dict[str, str]:
    """{name: sha256 hex digest} of the files."""
    return {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


@contextlib.contextmanager
def serve_data_mirror(monkeypatch, tmp_path: Path):
    """Yields the running mirror; downloads are allowed, go to it ($MINILTH_DATA_URL) and are cached in tmp_path."""
    from minilth.checkpoints import download
    from minilth.data import sources as data_sources

    files = mirror_files()
    monkeypatch.setattr(data_sources, "SHA256", digests(files))
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)
    monkeypatch.setenv("MINILTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINILTH_OFFLINE", raising=False)
    with serve({f"/{name}": data for name, data in files.items()}) as server:
        monkeypatch.setenv("MINILTH_DATA_URL", server.base_url)
        yield server


def load_script(name: str):
    """Import data_scripts/<name>.py as a fresh module, the way `python data_scripts/<name>.py` runs it."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))  # as Python does for a script: its folder's _cli.py is importable
    spec = importlib.util.spec_from_file_location(f"data_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
