"""The IMP loop and its command line: end to end on a tiny checkpoint, resume after kill -9, bad input."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from minilth.errors import MinilthError
from minilth.find_ticket import main
from minilth.prune import Mask
from minilth.ticket import TicketConfig, find_ticket


def cli_args(checkpoint, glue_dir, output, *extra):
    return ["--task", "rte", "--model", str(checkpoint), "--data-dir", str(glue_dir), "--output", str(output),
            "--target-sparsity", "0.3", "--max-train-examples", "32", "--max-eval-examples", "24",
            "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--quiet", *extra]


def read_run(output):
    summary = json.loads((output / "summary.json").read_text())
    masks = [Mask.load(output / "rounds" / f"round_{i:02d}" / "mask.pt") for i in range(len(summary["rounds"]))]
    return summary, masks


def test_cli_end_to_end(tiny_checkpoint, glue_dir, tmp_path, capsys):
    assert main(cli_args(tiny_checkpoint, glue_dir, tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert "estimated time" in out and "winning ticket" in out
    summary, masks = read_run(tmp_path / "run")
    assert [r["sparsity"] for r in summary["rounds"]] == [0.0, 0.1, 0.2, 0.3]
    for mask, target in zip(masks, [0.0, 0.1, 0.2, 0.3]):
        assert abs(mask.num_pruned - target * mask.num_total) <= 0.5  # exact up to rounding to whole weights
    assert [r["actual_sparsity"] for r in summary["rounds"]] == [m.sparsity for m in masks]
    for earlier, later in zip(masks, masks[1:]):
        for name, kept in later.items():
            assert not (kept & ~earlier[name]).any(), "a pruned weight came back"
    assert (tmp_path / "run" / "summary.csv").read_text().startswith("round,sparsity")
    assert (tmp_path / "run" / "summary.png").stat().st_size > 0


def test_keep_pooler_leaves_it_out_of_every_mask(tiny_checkpoint, glue_dir, tmp_path):
    args = cli_args(tiny_checkpoint, glue_dir, tmp_path / "run", "--keep-pooler")
    args[args.index("--target-sparsity") + 1] = "0.1"
    assert main(args) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["prune_pooler"] is False
    _, masks = read_run(tmp_path / "run")
    pooler = "bert.pooler.dense.weight"
    assert all(pooler not in mask.names() for mask in masks) and masks[1].num_pruned > 0


def test_a_small_pooler_is_warned_about_unless_kept_dense(tiny_checkpoint, glue_dir, tmp_path, caplog):
    small_pooler = tmp_path / "small_pooler"
    shutil.copytree(tiny_checkpoint, small_pooler)
    state = torch.load(small_pooler / "pytorch_model.bin", weights_only=True)
    state["bert.pooler.dense.weight"] *= 0.1  # like all-MiniLM-L6-v2's unused pooler
    torch.save(state, small_pooler / "pytorch_model.bin")
    for checkpoint, extra, warned in [(tiny_checkpoint, [], False), (small_pooler, [], True),
                                      (small_pooler, ["--keep-pooler"], False)]:
        caplog.clear()
        args = cli_args(checkpoint, glue_dir, tmp_path / f"run_{checkpoint.name}_{len(extra)}", *extra)
        args[args.index("--target-sparsity") + 1] = "0"
        assert main(args) == 0
        assert ("--keep-pooler" in caplog.text) == warned


def test_a_run_written_before_a_config_field_existed_resumes_with_its_default(tiny_rte_imp_run, tmp_path):
    config, output = tiny_rte_imp_run
    old_run = tmp_path / "old_run"
    shutil.copytree(output, old_run)
    stored = json.loads((old_run / "config.json").read_text())
    del stored["prune_pooler"]  # config.json as written before --keep-pooler
    (old_run / "config.json").write_text(json.dumps(stored))
    assert len(find_ticket(config, old_run, progress=False, echo=None)) == 3  # finished: nothing to train
    with pytest.raises(MinilthError, match="prune_pooler differ"):
        find_ticket(dataclasses.replace(config, prune_pooler=False), old_run, progress=False, echo=None)


def test_resume_after_kill_equals_uninterrupted(tiny_checkpoint, glue_dir, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    command = [sys.executable, "-m", "minilth.find_ticket", *cli_args(tiny_checkpoint, glue_dir, killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first_round = killed / "rounds" / "round_00" / "metrics.json"
    deadline = time.time() + 120
    while not first_round.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert first_round.exists() and not (killed / "rounds" / "round_03" / "metrics.json").exists()

    assert subprocess.run(command).returncode == 0
    assert main(cli_args(tiny_checkpoint, glue_dir, whole)) == 0
    (resumed_summary, resumed_masks), (whole_summary, whole_masks) = read_run(killed), read_run(whole)
    strip = lambda s: [{k: v for k, v in r.items() if k != "seconds"} for r in s["rounds"]]  # noqa: E731
    assert strip(resumed_summary) == strip(whole_summary)
    assert resumed_masks == whole_masks


def test_bad_input_is_one_clear_line(tiny_checkpoint, glue_dir, tmp_path, capsys):
    assert main(cli_args(tiny_checkpoint, glue_dir, tmp_path / "a", "--target-sparsity", "1.0")) == 2
    assert "target sparsity must be in [0, 1)" in capsys.readouterr().err
    assert main(["--task", "rtx", "--output", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'rtx'" in err and "rte" in err and len(err.strip().splitlines()) == 1


def test_output_folder_with_another_config(tiny_checkpoint, glue_dir, tmp_path):
    config = TicketConfig(task="rte", model=str(tiny_checkpoint), data_dir=str(glue_dir), target_sparsity=0.1,
                          max_train_examples=16, max_eval_examples=8, epochs=1, device="cpu")
    find_ticket(config, tmp_path, progress=False, echo=None)
    other = TicketConfig(**{**config.to_dict(), "seeds": [1]})
    with pytest.raises(MinilthError, match="holds a run with a different config \\(seeds differ\\)"):
        find_ticket(other, tmp_path, progress=False, echo=None)
