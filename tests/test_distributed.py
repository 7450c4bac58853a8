"""torchrun with gloo on the CPU: two processes train exactly as one, and find_ticket finds the same ticket."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minilth.checkpoints import load_mask
from minilth.data.folders import load_dataset
from minilth.data.tasks import get_task
from minilth.train import finetune, model_for_task
from minilth.checkpoints.pretrained import load_tokenizer

HERE = Path(__file__).resolve().parent


def torchrun(processes: int, *command: str) -> None:
    """Runs a command under torchrun with `processes` gloo ranks on this machine; fails the test on an error."""
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          f"--nproc_per_node={processes}", *command], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.fixture(scope="module")
def no_dropout_checkpoint(tiny_checkpoint, tmp_path_factory) -> Path:
    """The tiny checkpoint with dropout off: then one process and several draw nothing at random."""
    folder = tmp_path_factory.mktemp("no_dropout") / "tiny"
    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_two_gloo_processes_train_the_same_weights_as_one(no_dropout_checkpoint, glue_dir, tmp_path):
    out = tmp_path / "ddp.pt"
    torchrun(2, str(HERE / "ddp_finetune.py"), str(no_dropout_checkpoint), str(glue_dir), str(out))
    ddp = torch.load(out, weights_only=True)

    task = get_task("rte")
    train = load_dataset(task, glue_dir, "train", load_tokenizer(no_dropout_checkpoint), max_examples=40)
    model = model_for_task(no_dropout_checkpoint, task, seed=0)
    history = finetune(model, task, train, None, epochs=2, batch_size=8, learning_rate=1e-3, seed=0, device="cpu",
                       progress=False)
    assert len(history.losses) == 10  # 5 global batches of 8 (4 per rank), twice
    assert ddp["losses"] == pytest.approx(history.losses, abs=1e-5)
    start = model_for_task(no_dropout_checkpoint, task, seed=0).state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.allclose(ddp["state"][name], tensor, atol=1e-5), name
        if tensor.is_floating_point() and "classifier" in name:
            assert not torch.allclose(tensor, start[name]), "the weights moved"


def test_find_ticket_under_torchrun_finds_the_same_ticket_and_resumes(no_dropout_checkpoint, glue_dir, tmp_path):
    args = ["--task", "rte", "--model", str(no_dropout_checkpoint), "--data-dir", str(glue_dir),
            "--target-sparsity", "0.2", "--max-train-examples", "32", "--max-eval-examples", "16", "--epochs", "1",
            "--batch-size", "8", "--learning-rate", "1e-3", "--device", "cpu", "--quiet"]
    torchrun(2, "-m", "minilth.find_ticket", *args, "--output", str(tmp_path / "two"))
    subprocess.run([sys.executable, "-m", "minilth.find_ticket", *args, "--output", str(tmp_path / "one")],
                   check=True, capture_output=True)
    two, one = (json.loads((tmp_path / run / "summary.json").read_text()) for run in ("two", "one"))
    assert [r["mean"] for r in two["rounds"]] == pytest.approx([r["mean"] for r in one["rounds"]], abs=1e-6)
    for index in range(3):
        masks = [load_mask(tmp_path / run / "rounds" / f"round_{index:02d}" / "mask.pt") for run in ("two", "one")]
        assert masks[0] == masks[1]
    assert not list((tmp_path / "two").rglob(".*.tmp*")), "a rank other than 0 wrote"
    (tmp_path / "two" / "rounds" / "round_02" / "metrics.json").unlink()  # resume the last round, two ranks
    torchrun(2, "-m", "minilth.find_ticket", *args, "--output", str(tmp_path / "two"))
    resumed = json.loads((tmp_path / "two" / "summary.json").read_text())["rounds"]
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(resumed) == strip(two["rounds"])


def flags_of(command: str) -> list[str]:
    """Every flag of a command that torchrun may launch, its sub-commands' too."""
    import argparse
    import importlib

    def flags(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                yield from (flag for sub in action.choices.values() for flag in flags(sub))
            yield from (option for option in action.option_strings if option.startswith("--"))

    return sorted(set(flags(importlib.import_module(f"minilth.{command}").build_parser())))


@pytest.mark.parametrize("command", ["find_ticket", "controls", "transfer", "sweep", "weights"])
def test_torchrun_passes_every_flag_on_to_the_command(command):
    """torchrun's own parser reads the command's arguments too, and stops at an abbreviation of one of its options
    that is ambiguous (`--run` could be --run-path or --run_path): no flag of minilth may be one."""
    from torch.distributed.run import get_args_parser

    for flag in flags_of(command):
        args = get_args_parser().parse_args(["--nproc_per_node", "2", "-m", f"minilth.{command}", flag, "value"])
        assert args.training_script_args == [flag, "value"], flag


def test_a_bad_flag_under_torchrun_is_one_line_printed_once(tmp_path):
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                          "minilth.find_ticket", "--task", "rte", "--no-such-flag"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    lines = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert lines == ["error: unrecognized arguments: --no-such-flag; see python -m minilth.find_ticket --help"], \
        run.stderr[-3000:]
    assert run.returncode == 1 and "exitcode  : 2" in run.stderr  # torchrun's own status; each rank's: 2
