"""Transfer: only the mask moves, the pooler rule, MLM tickets onto GLUE, the CLI matrix with resume, bad input."""
import dataclasses
import json
import random
import shutil

import pytest
import torch

import minilth.lottery.mask_transfer as transfer_module
from minilth.errors import MinilthError
from minilth.model import BertConfig, BertModel, build_model
from minilth.checkpoints import load_mask, save_mask
from minilth.lottery.baselines import random_prune
from minilth.prune import Mask, MaskError, prunable_names
from minilth.data.tasks import get_task
from minilth.checkpoints import resolve_checkpoint
from minilth.config import Experiment, TicketConfig
from minilth.lottery.run_folder import load_task_data as load_run_data
from minilth.ticket import find_ticket
from minilth.train import finetune
from minilth.lottery.mask_transfer import find_mask, transfer, transfer_mask
from minilth.train import model_for_task
from minilth.transfer import main

from conftest import TINY

POOLER = "bert.pooler.dense.weight"


def fresh_model(config, task, seed):
    """theta_0: the pre-trained model with the head drawn from the seed."""
    return model_for_task(config.model, task, seed)


def load_task_data(config, task):
    return load_run_data(config, task, resolve_checkpoint(config.model), progress=False)


@pytest.fixture(scope="module")
def imp_run(tiny_rte_imp_run, tmp_path_factory):
    """The tiny RTE IMP run, plus a copy of it holding only its mask files."""
    config, output = tiny_rte_imp_run
    # The source of a transfer is read for its finished rounds' masks only: a folder with nothing else must do.
    masks_only = tmp_path_factory.mktemp("sources") / "rte"
    for path in [*output.glob("rounds/round_*/mask.pt"), *output.glob("rounds/round_*/metrics.json")]:
        target = masks_only / path.relative_to(output)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    return config, output, masks_only


def random_mask(model, sparsity=0.3, seed=0):
    return random_prune(model, Mask.dense(model), sparsity, seed=seed)


def test_pooler_is_dropped_or_left_dense_and_other_models_are_refused():
    config = BertConfig(**TINY)
    glue, squad, mlm = (build_model(config, head) for head in ("classification", "span", "mlm"))
    glue_mask = random_mask(glue)
    assert POOLER in glue_mask
    for target in (squad, mlm):  # an unused pooler there, prunable as in the reference code
        moved = transfer_mask(glue_mask, target)
        assert moved.names() == prunable_names(target) and POOLER in moved
        assert all(torch.equal(moved[name], glue_mask[name]) for name in moved)
    kept_pooler = random_prune(glue, Mask.dense(glue, prunable_names(glue, include_pooler=False)), 0.3)
    moved = transfer_mask(kept_pooler, mlm)
    assert POOLER not in moved and moved.names() == kept_pooler.names()  # the pooler stays dense
    bare = transfer_mask(glue_mask, build_model(config, "base"))  # names without the bert. prefix
    assert "pooler.dense.weight" in bare and torch.equal(bare["pooler.dense.weight"], glue_mask[POOLER])
    no_pooler = transfer_mask(glue_mask, BertModel(config, add_pooling_layer=False))
    assert len(no_pooler) == len(glue_mask) - 1 and "pooler.dense.weight" not in no_pooler

    deeper = build_model(BertConfig(**{**TINY, "num_hidden_layers": 3}), "classification")
    with pytest.raises(MaskError, match="mask was made for another model: 6 prunable target matrices the mask lacks"):
        transfer_mask(glue_mask, deeper)
    with pytest.raises(MaskError, match="mask was made for another model: 6 mask entries the target lacks"):
        transfer_mask(random_mask(deeper), glue)
    wider = build_model(BertConfig(**{**TINY, "intermediate_size": 48}), "classification")
    with pytest.raises(MaskError, match="mask was made for another model: .*shape mismatches"):
        transfer_mask(glue_mask, wider)


@pytest.mark.parametrize("keep_pooler", [False, True], ids=["pooler pruned", "pooler kept"])
def test_an_mlm_ticket_moves_onto_every_head_s_model(keep_pooler):
    """The MLM model's mask (its unused pooler pruned, or left out with --keep-pooler) goes onto a classifier, a
    regression head, a span head and another MLM model: the same flags under the same names; a kept pooler stays
    dense in every target."""
    config = BertConfig(**TINY)
    mlm = build_model(config, "mlm")
    mask = random_prune(mlm, Mask.dense(mlm, prunable_names(mlm, include_pooler=not keep_pooler)), 0.5, seed=3)
    for head in ("classification", "regression", "span", "mlm"):
        target = build_model(config, head)
        moved = transfer_mask(mask, target)
        assert moved.names() == prunable_names(target, include_pooler=not keep_pooler), head
        assert all(torch.equal(moved[name], mask[name]) for name in moved) and moved.num_pruned == mask.num_pruned
        moved.apply_to(target)
        assert target.bert.pooler.dense.weight.count_nonzero() == (
            target.bert.pooler.dense.weight.numel() if keep_pooler else moved[POOLER].sum())


def test_transfer_uses_theta0_of_the_target_bit_for_bit(imp_run):
    config, output, _ = imp_run
    mask = load_mask(output / "rounds" / "round_02" / "mask.pt")
    target = fresh_model(TicketConfig(**{**config.to_dict(), "task": "stsb"}), get_task("stsb"), seed=5)
    theta0 = {name: tensor.clone() for name, tensor in target.state_dict().items()}
    moved = transfer_mask(mask, target)
    moved.apply_to(target)
    for name, tensor in target.state_dict().items():
        if name in moved:
            assert torch.equal(tensor[moved[name]], theta0[name][moved[name]])  # unpruned: theta_0 exactly
            assert not tensor[~moved[name]].any()
        else:
            assert torch.equal(tensor, theta0[name]), f"{name} changed"
    assert moved.num_pruned == mask.num_pruned  # a GLUE mask onto a GLUE model: everything kept


def test_transfer_equals_finetuning_the_mask_from_theta0(imp_run):
    config, _, masks_only = imp_run
    mask, path = find_mask(masks_only, 0.1)
    assert path.parent.name == "round_01" and abs(mask.num_pruned - 0.1 * mask.num_total) <= 0.5
    assert find_mask(masks_only)[1].parent.name == "round_02"  # default: the sparsest
    mrpc = TicketConfig(**{**config.to_dict(), "task": "mrpc"})
    data = load_task_data(mrpc, get_task("mrpc"))
    metrics = transfer(mask, get_task("mrpc"), config, seed=1, data=data, progress=False)
    theta_0 = fresh_model(mrpc, get_task("mrpc"), seed=1)
    mask.apply_to(theta_0)
    history = finetune(theta_0, get_task("mrpc"), *data, mrpc, seed=1, mask=mask, progress=False)
    assert metrics == history.final and set(metrics) == {"acc", "f1", "acc_se", "acc_chance"}


def test_cells_an_imp_run_trained_are_read_from_it_and_equal_training_them(imp_run, tmp_path):
    """A task's own mask on its own task, and its dense baseline, are what its IMP run trained: the matrix reads them
    from the run (the Table-2 grid's rounds serve its transfer matrix) and training them again gives the same
    numbers to the last digit."""
    config, output, masks_only = imp_run
    same = Experiment(**{name: value for name, value in config.to_dict().items() if name in Experiment.__dataclass_fields__})
    record = transfer_module.transfer_matrix([output], [get_task("rte"), get_task("mrpc")], same, tmp_path,
                                             sparsity=0.2, labels=["rte@20%"], progress=False, echo=None)
    runs = record["runs"]
    imp_round = json.loads((output / "rounds" / "round_02" / "metrics.json").read_text())["metrics"][0]
    dense_round = json.loads((output / "rounds" / "round_00" / "metrics.json").read_text())["metrics"][0]
    assert runs["rte@20%|rte|0"]["read_from"].endswith("round_02/metrics.json")
    assert runs["rte@20%|rte|0"]["metrics"] == imp_round
    assert runs["dense|rte|0"]["read_from"].endswith("round_00/metrics.json")
    assert runs["dense|rte|0"]["metrics"] == dense_round
    assert "read_from" not in runs["rte@20%|mrpc|0"] and "read_from" not in runs["dense|mrpc|0"]  # other tasks: trained
    mask = load_mask(output / "rounds" / "round_02" / "mask.pt")
    assert transfer(mask, get_task("rte"), same, seed=0, progress=False) == imp_round
    assert transfer(None, get_task("rte"), same, seed=0, progress=False) == dense_round
    other = dataclasses.replace(same, learning_rate=3e-5)  # other settings: nothing is read, everything trained
    trained = transfer_module.transfer_matrix([output], [get_task("rte")], other, tmp_path / "other", sparsity=0.2,
                                              labels=["rte@20%"], progress=False, echo=None)
    assert not any("read_from" in run for run in trained["runs"].values())


def write_wikitext(folder, seed=0):
    """A tiny corpus in WikiText-103 raw format: headings, blank lines and prose lines."""
    words = ("the cat sat on a mat while river music played across old town bridges under grey skies "
             "people walked slowly toward markets selling bread fish apples and warm tea").split()
    rng = random.Random(seed)
    corpus = folder / "wikitext-103-raw"
    corpus.mkdir(parents=True)
    for name, lines in (("wiki.train.raw", 60), ("wiki.valid.raw", 20)):
        text = [" = Title = ", ""]
        for i in range(lines):
            text.append(" " + " ".join(rng.choice(words) for _ in range(20)) + " . ")
            if i % 10 == 9:
                text += ["", " = = Section = = ", ""]
        (corpus / name).write_text("\n".join(text) + "\n")
    return folder


def test_mlm_ticket_on_a_raw_corpus_transfers_to_glue(tiny_checkpoint, glue_dir, tmp_path):
    data_dir = write_wikitext(tmp_path / "data")
    config = TicketConfig(task="mlm", model=str(tiny_checkpoint), data_dir=str(data_dir), target_sparsity=0.1,
                          max_train_examples=4, max_eval_examples=2, epochs=1, batch_size=4, device="cpu")
    rounds = find_ticket(config, tmp_path / "mlm", progress=False, echo=None)
    assert [r.sparsity for r in rounds] == [0.0, 0.1]
    assert {"accuracy", "perplexity"} <= set(rounds[1].metrics[0])
    mask, _ = find_mask(tmp_path / "mlm")
    assert POOLER in mask and len(mask) == 13 and abs(mask.num_pruned - 0.1 * mask.num_total) <= 0.5

    rte = TicketConfig(task="rte", model=str(tiny_checkpoint), data_dir=str(glue_dir), max_train_examples=8,
                       max_eval_examples=8, epochs=1, batch_size=8, device="cpu")
    target = fresh_model(rte, get_task("rte"), seed=0)
    moved = transfer_mask(mask, target)
    assert moved == Mask({name: mask[name] for name in mask})  # the same 73-style set, pooler included
    metrics = transfer(mask, get_task("rte"), rte, seed=0, progress=False)
    assert set(metrics) == {"acc", "acc_se", "acc_chance"} and 0.0 <= metrics["acc"] <= 1.0


def cli(sources, tasks, checkpoint, glue_dir, output, *extra):
    return ["--masks", *map(str, sources), "--tasks", *tasks, "--model", str(checkpoint), "--data-dir", str(glue_dir),
            "--output", str(output), "--max-train-examples", "8", "--max-eval-examples", "8", "--epochs", "1",
            "--batch-size", "8", "--device", "cpu", "--quiet", *extra]


def test_cli_fills_the_matrix_and_resumes(imp_run, tiny_checkpoint, glue_dir, tmp_path, capsys, monkeypatch):
    _, _, masks_only = imp_run
    single_file = masks_only / "rounds" / "round_01" / "mask.pt"
    output = tmp_path / "transfer"
    args = cli([masks_only, single_file], ["rte", "mrpc"], tiny_checkpoint, glue_dir, output)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "rte@20%" in out and "rte@10%" in out and "dense" in out and "MRPC" in out
    record = json.loads((output / "transfer.json").read_text())
    assert len(record["runs"]) == 6  # (dense + 2 masks) x 2 tasks x 1 seed
    assert set(record["sources"]) == {"rte@20%", "rte@10%"}
    stored = transfer_module.load_matrix(output / "transfer.json")  # read back as transfer_matrix returned it
    assert (stored["tasks"], stored["labels"], stored["seeds"]) == (["rte", "mrpc"], ["rte@20%", "rte@10%"], [0])
    rows = (output / "transfer.csv").read_text().splitlines()
    assert rows[0].startswith("source,target,seed,metric,value,dense_mean,minus_dense") and len(rows) == 7
    for row in rows[1:]:
        cells = row.split(",")
        assert abs(float(cells[4]) - float(cells[5]) - float(cells[6])) < 1e-9
        if cells[0] == "dense":
            assert float(cells[6]) == 0.0
    heatmap_csv = (output / "transfer_heatmap.csv").read_text().splitlines()
    assert heatmap_csv[0] == "source,RTE (acc),MRPC (acc)" and len(heatmap_csv) == 3
    assert (output / "transfer_heatmap.png").stat().st_size > 0

    def no_training(*args, **kwargs):
        raise AssertionError("a finished transfer was run again")

    monkeypatch.setattr(transfer_module, "finetune", no_training)
    assert main(args + ["--labels", "rte@20%", "rte@10%", "--control", "rte@10%"]) == 0  # the default labels
    out = capsys.readouterr().out
    assert "0 fine-tunings to do" in out and "minus rte@10%, per seed" in out and "rte@20% minus rte@20%" in out


def test_cli_bad_input_is_one_clear_line(imp_run, tiny_checkpoint, glue_dir, tmp_path, capsys):
    _, _, masks_only = imp_run
    foreign = tmp_path / "foreign.pt"
    save_mask(random_mask(build_model(BertConfig(**{**TINY, "num_hidden_layers": 3}), "classification")), foreign)
    cases = [
        (cli([foreign], ["rte"], tiny_checkpoint, glue_dir, tmp_path / "a"), "mask was made for another model"),
        (cli([masks_only], ["rtx"], tiny_checkpoint, glue_dir, tmp_path / "b"), "unknown task 'rtx'"),
        (cli([tmp_path / "missing"], ["rte"], tiny_checkpoint, glue_dir, tmp_path / "c"), "does not exist"),
        (cli([masks_only], ["rte"], tiny_checkpoint, glue_dir, tmp_path / "d", "--sparsity", "0.5"),
         "no mask at sparsity 0.5 (it has 0.10, 0.20)"),
        (cli([masks_only, masks_only], ["rte"], tiny_checkpoint, glue_dir, tmp_path / "e"), "one distinct label"),
        (cli([masks_only], ["rte"], tiny_checkpoint, glue_dir, tmp_path / "f", "--control", "random"),
         "--control names a row by its label"),
    ]
    for args, message in cases:
        assert main(args) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "a" / "transfer.json").exists()  # refused before any training


def test_output_folder_with_other_settings_is_refused(imp_run, tiny_checkpoint, glue_dir, tmp_path):
    _, _, masks_only = imp_run
    config = Experiment(task="rte", model=str(tiny_checkpoint), data_dir=str(glue_dir), max_train_examples=8,
                        max_eval_examples=8, epochs=1, batch_size=8, device="cpu")
    transfer_module.transfer_matrix([masks_only], [get_task("rte")], config, tmp_path, progress=False, echo=None)
    other = Experiment(**{**config.to_dict(), "learning_rate": 1e-3})
    with pytest.raises(MinilthError, match="other settings \\(learning_rate differ\\)"):
        transfer_module.transfer_matrix([masks_only], [get_task("rte")], other, tmp_path, progress=False, echo=None)


def test_each_cell_is_compared_with_the_dense_spread_and_the_control_row_seed_by_seed():
    runs = {}
    for source, target, seed, value in [("dense", "stsb", 0, 0.80), ("dense", "stsb", 1, 0.78),
                                        ("mlm", "stsb", 0, 0.79), ("mlm", "stsb", 1, 0.70),
                                        ("random", "stsb", 0, 0.10), ("random", "stsb", 1, 0.20),
                                        ("dense", "sst2", 0, 0.90), ("dense", "sst2", 1, 0.90),
                                        ("mlm", "sst2", 0, 0.91), ("mlm", "sst2", 1, 0.90),
                                        ("random", "sst2", 0, 0.80), ("random", "sst2", 1, 0.95)]:
        metric = "pearson" if target == "stsb" else "acc"
        runs[f"{source}|{target}|{seed}"] = {"source": source, "target": target, "seed": seed,
                                             "metrics": {metric: value}}
    record = {"tasks": ["stsb", "sst2"], "labels": ["mlm", "random"], "runs": runs}
    stsb, sst2 = transfer_module.compare_cells(record, "random")
    assert (stsb["source"], stsb["target"], stsb["seeds"]) == ("mlm", "stsb", [0, 1])
    assert stsb["mean"] == pytest.approx(74.5) and stsb["minus_dense"] == pytest.approx(-4.5)
    assert stsb["dense_std"] == pytest.approx(2 ** 0.5)  # the std of 80 and 78
    assert not stsb["matches_dense"]  # 4.5 points below, the dense std is 1.4
    assert stsb["minus_control"] == pytest.approx([69.0, 50.0])
    assert sst2["matches_dense"] and sst2["minus_control"] == pytest.approx([11.0, -5.0])
    text = transfer_module.format_comparison([stsb, sst2], "random")
    assert "+69.00 +50.00" in text and "+11.00 -5.00" in text
