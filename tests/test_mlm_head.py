"""An MLM head for a checkpoint that never trained one, on the GLUE files' sentences: the corpus holds each training
sentence once and its dev file only held-out ones; training the head alone lowers the held-out masked-token loss
and changes nothing of the encoder; the checkpoint written is the model measured."""
import json

import pytest
import torch

from minilth.checkpoints import from_pretrained, load_tokenizer
from minilth.data import get_task, load_dataset
from minilth.data.folders import task_file
from minilth.data.glue_text import glue_sentences, write_glue_text
from minilth.lottery.mlm_head import HeadSettings, train_mlm_head
from minilth.settings import SettingsError
from minilth.train import evaluate
from minilth.train_mlm_head import main


@pytest.fixture(scope="module")
def corpus_dir(glue_dir, tmp_path_factory):
    """A data folder holding glue-text/, made from the GLUE samples of tests/fixtures."""
    folder = tmp_path_factory.mktemp("mlm_data")
    write_glue_text(glue_dir, folder / "glue-text", task_file)
    return folder


def test_the_corpus_holds_each_training_sentence_once_and_held_out_dev_sentences(glue_dir, corpus_dir, tmp_path):
    train = (corpus_dir / "glue-text" / "train.txt").read_text().splitlines()
    dev = (corpus_dir / "glue-text" / "dev.txt").read_text().splitlines()
    assert len(train) == len(set(train)) and sorted(train) == sorted(glue_sentences(glue_dir, "train", task_file))
    assert dev and not set(dev) & set(train)
    assert "Our friends won't buy this analysis, let alone the next one we propose." in train  # CoLA's first
    write_glue_text(glue_dir, tmp_path / "again", task_file)  # the same files, byte for byte: shuffled with a fixed seed
    assert (tmp_path / "again" / "train.txt").read_bytes() == (corpus_dir / "glue-text" / "train.txt").read_bytes()


def test_training_the_head_alone_lowers_the_held_out_loss_and_leaves_the_encoder(tiny_checkpoint, corpus_dir,
                                                                                  tmp_path):
    settings = HeadSettings(model=str(tiny_checkpoint), task="mlm_glue", data_dir=str(corpus_dir),
                            max_train_examples=24, epochs=20, learning_rate=1e-2, batch_size=64, device="cpu")
    report = train_mlm_head(settings, tmp_path / "head", progress=False)
    assert report["after"]["loss"] < report["before"]["loss"] - 0.5  # a random head starts near ln(V)
    assert report["losses"][-1] < report["losses"][0] and report["masked_positions"] > 100
    assert json.loads((tmp_path / "head" / "mlm_head.json").read_text())["after"] == report["after"]

    before = from_pretrained(tiny_checkpoint, head="mlm").state_dict()
    after = from_pretrained(tmp_path / "head", head="mlm")
    changed = {name for name, tensor in after.state_dict().items() if not torch.equal(tensor, before[name])}
    assert changed == {"cls.predictions.bias", "cls.predictions.transform.dense.weight",
                       "cls.predictions.transform.dense.bias", "cls.predictions.transform.LayerNorm.weight",
                       "cls.predictions.transform.LayerNorm.bias"}  # the encoder and the tied decoder: untouched
    task = get_task("mlm_glue")
    held_out = load_dataset(task, corpus_dir, "dev", load_tokenizer(tiny_checkpoint), progress=False)
    assert evaluate(after, task, held_out, eval_batch_size=16, device="cpu") == report["after"]


def test_the_command_prints_before_and_after_and_bad_settings_are_one_line(tiny_checkpoint, corpus_dir, tmp_path,
                                                                            capsys):
    args = ["--model", str(tiny_checkpoint), "--data-dir", str(corpus_dir), "--max-train-examples", "8",
            "--epochs", "1", "--device", "cpu", "--output", str(tmp_path / "head"), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "before: masked-token accuracy" in out and "after: masked-token accuracy" in out
    with pytest.raises(SettingsError, match="--epochs must be in"):
        HeadSettings(epochs=0)
    assert main([*args, "--batch-size", "0"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
