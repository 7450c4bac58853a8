"""Bad input, command by command: exit 2, one line on stderr, no traceback, nothing written; then the corrected command
works in the same folder. One shared table of bad fine-tuning settings, each command's own cases beside it, and the
files a run writes and reads back, damaged and repaired."""
import json
import re
import shutil

import pytest
import torch

from minilth.controls import main as controls_main
from minilth.find_ticket import main as find_ticket_main
from minilth.sweep import main as sweep_main
from minilth.transfer import main as transfer_main
from minilth.weights import main as weights_main

# Settings every fine-tuning command takes (find_ticket, transfer, sweep plan): (flags, what the one line says)
FINETUNE_CASES = [
    (["--epochs", "inf"], "--epochs must be positive, got inf"),
    (["--epochs", "1e300"], "--epochs must be at most 1000"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--learning-rate", "inf"], "--learning-rate must be positive"),
    (["--learning-rate", "nan"], "--learning-rate must be positive"),
    (["--learning-rate=-2e-5"], "--learning-rate must be positive"),
    (["--batch-size", "0"], "--batch-size must be positive"),
    (["--batch-size", "1.5"], "invalid int value: '1.5'"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be positive"),
    (["--weight-decay", "-1"], "--weight-decay must be 0 or more"),
    (["--warmup-ratio", "1"], "--warmup-ratio must be in [0, 1)"),
    (["--max-grad-norm", "inf"], "--max-grad-norm must be 0 (off) or more"),
    (["--seeds", "-1"], "--seeds must be whole numbers from 0 to 4294967295"),
    (["--seeds", "99999999999"], "--seeds must be whole numbers from 0 to 4294967295"),
    (["--seeds", "0", "0"], "--seeds must differ"),
    (["--device", "meta"], "unknown device 'meta' (--device)"),
    (["--device", "mps"], "unknown device 'mps' (--device)"),
    (["--device", "cpu:1"], "unknown device 'cpu:1' (--device); use auto, cpu, cuda or cuda:N"),
    (["--precision", "fp8"], "invalid choice: 'fp8'"),
    (["--squad-evaluation", "fancy"], "invalid choice: 'fancy'"),
    (["--max-train-examples", "0"], "--max-train-examples must be at least 1"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]
if not torch.cuda.is_available():
    FINETUNE_CASES.append((["--precision", "fp16"], "fp16 needs a CUDA GPU"))
# The same, for the commands that load a model and data before any work (find_ticket, transfer).
LOADING_CASES = [(["--model", "{tmp}/nowhere"], "is neither a local checkpoint nor a known name"),
                 (["--model", ""], "argument --model: an empty value; give a value"),
                 (["--data-dir", "{tmp}/nowhere"], "not found"),
                 (["--data-dir", " "], "argument --data-dir: an empty value; give a value")]
OUTPUT_CASES = [(["--output", "{file}"], "is a file, not a folder"),
                (["--output", "{file}/sub"], "cannot be written"),
                (["--output", ""], "argument --output: an empty value; give a value")]

FIND_TICKET_CASES = FINETUNE_CASES + LOADING_CASES + OUTPUT_CASES + [
    (["--task", "rtx"], "unknown task 'rtx'"),
    (["--target-sparsity", "1"], "--target-sparsity must be in [0, 1)"),
    (["--target-sparsity", "nan"], "--target-sparsity must be in [0, 1)"),
    (["--rate", "0"], "--rate must be in (0, 1)"),
    (["--rewind-at", "1"], "--rewind-at must be a fraction of training in [0, 1)"),
    (["--schedule", "cosine"], "invalid choice: 'cosine'"),
    (["--structure", "blocks"], "invalid choice: 'blocks'"),
    (["--importance", "gradient"], "--importance gradient ranks heads and neurons: add --structure"),
    (["--rank-within", "layer"], "--rank-within layer ranks heads and neurons: add --structure"),
    (["--structure", "heads", "--include-embeddings"], "never embeddings: drop --include-embeddings"),
    (["--controls", "lucky_guess"], "invalid choice: 'lucky_guess'"),
    (["--preset", "huge"], "invalid choice: 'huge'"),
    (["--task", "stsb", "--max-eval-examples", "1"], "a correlation needs at least 2 examples"),
    (["--rate", "1e-300"], "--rate 1e-300 takes more than 100 rounds to --target-sparsity 0.1; raise --rate"),
    (["--rate", "1e-6"], "--rate 1e-06 takes more than 100 rounds"),
    (["--structure", "heads", "--importance", "gradient", "--importance-batches", "99999999999999999999"],
     "--importance-batches must be a whole number of batches from 0 (all of them) to 1,000,000"),
    (["--epochs", "1e-300"], "--epochs 1e-300 is less than one step: an epoch is 1 batch; give at least 1"),
]
CONTROLS_CASES = [case for case in FINETUNE_CASES if case[0][0] in ("--seeds", "--device", "--no-such-flag")] + \
    OUTPUT_CASES + [
    (["--data-dir", "{tmp}/nowhere"], "not found"),
    (["--sparsity", "0.7"], "has no finished round at sparsity 0.7 (it has 0.1, 0.2)"),
    (["--sparsity", "abc"], "--sparsity takes one sparsity (0.5) or TASK=S pairs"),
    (["--sparsity", "2"], "--sparsity must be in (0, 1)"),
    (["--controls", "lucky_guess"], "invalid choice: 'lucky_guess'"),
    (["--sparsity", "mrpc=0.1"], "--sparsity names mrpc, but the run is rte's; give --sparsity S or rte=S"),
    (["--imp-run", "{tmp}/nowhere"], "is not a find_ticket output folder (no config.json)"),
    (["--imp-run", "{file}"], "is not a find_ticket output folder (no config.json)"),
    (["--imp", "{tmp}"], "unrecognized arguments: --imp"),  # never an abbreviation: torchrun takes some for its own
]
TRANSFER_CASES = FINETUNE_CASES + LOADING_CASES + OUTPUT_CASES + [
    (["--tasks", "rtx"], "unknown task 'rtx'"),
    (["--tasks", "rte", "rte"], "--tasks names a task twice"),
    (["--sparsity", "0.7"], "has no mask at sparsity 0.7 (it has 0.10, 0.20); pick one of those"),
    (["--labels", "a", "b"], "give one distinct label per mask source"),
    (["--labels", ""], "argument --labels: an empty value; give a value"),
    (["--masks", "{tmp}/nowhere"], "does not exist; give a mask.pt file or a find_ticket output folder"),
]
# (a plan may be written where no GPU is, for machines that have one: fp16 is checked when a shard runs)
SWEEP_PLAN_CASES = [case for case in FINETUNE_CASES if "fp16" not in case[0]] + OUTPUT_CASES + [
    (["--tasks", "rtx"], "unknown task 'rtx'"),
    (["--sparsity", "0.3"], "--sparsity 0.3 is not a sparsity IMP reaches with these settings (0.1)"),
    (["--transfer-sources", "rte"], "--transfer-sources needs --transfer"),
    (["--controls", "lucky_guess"], "invalid choice: 'lucky_guess'"),
]


def one_line_error(main, argv: list[str], capsys) -> str:
    """Runs a command in this process; asserts exit 2 and one line on stderr, without a traceback; returns it."""
    parsed = True
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's errors end here
        status, parsed = exit_.code, False
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: "), (argv, status, err)
    assert "Traceback" not in err and "weights_only=False" not in err
    if not parsed:  # argparse's own: no usage block, the command's help named instead
        assert re.fullmatch(r"error: .+; see python -m minilth\.\w+( \w+)? --help", lines[0]), lines[0]
    return lines[0]


def fill(flags: list[str], tmp_path) -> list[str]:
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    return [flag.format(tmp=tmp_path, file=a_file) for flag in flags]


def assert_each_case_is_one_line_and_writes_nothing(main, base, cases, output, tmp_path, capsys):
    for flags, message in cases:
        line = one_line_error(main, base + fill(flags, tmp_path), capsys)
        assert message in line, (flags, line)
        assert not output.exists() or not any(output.rglob("*")), f"{flags} wrote into {output}"


@pytest.fixture
def tiny(tiny_checkpoint, glue_dir):
    """The flags of a tiny RTE fine-tuning: the tiny random BERT, the GLUE samples, a few examples."""
    return ["--model", str(tiny_checkpoint), "--data-dir", str(glue_dir), "--max-train-examples", "8",
            "--max-eval-examples", "8", "--epochs", "1", "--batch-size", "8", "--device", "cpu"]


def test_find_ticket(tiny, tmp_path, capsys):
    output = tmp_path / "run"
    base = ["--task", "rte", *tiny, "--target-sparsity", "0.1", "--output", str(output), "--quiet"]
    assert_each_case_is_one_line_and_writes_nothing(find_ticket_main, base, FIND_TICKET_CASES, output, tmp_path,
                                                    capsys)
    assert find_ticket_main(base) == 0 and (output / "rounds" / "round_01" / "metrics.json").exists()


def test_controls(tiny_rte_imp_run, tmp_path, capsys):
    _, imp = tiny_rte_imp_run
    output = tmp_path / "controls"
    base = ["--imp-run", str(imp), "--controls", "random_pruning", "--output", str(output), "--quiet"]
    assert_each_case_is_one_line_and_writes_nothing(controls_main, base, CONTROLS_CASES, output, tmp_path, capsys)
    assert controls_main(base) == 0 and (output / "sparsity_0.20" / "table2.csv").exists()


def test_transfer(tiny_rte_imp_run, tiny, tmp_path, capsys):
    _, imp = tiny_rte_imp_run
    output = tmp_path / "transfer"
    base = ["--masks", str(imp), "--tasks", "rte", *tiny, "--output", str(output), "--quiet"]
    assert_each_case_is_one_line_and_writes_nothing(transfer_main, base, TRANSFER_CASES, output, tmp_path, capsys)
    assert transfer_main(base) == 0 and (output / "transfer.json").exists()


def test_sweep_plan(tiny, tmp_path, capsys):
    output = tmp_path / "sweep"
    base = ["plan", "--tasks", "rte", *tiny, "--target-sparsity", "0.1", "--output", str(output)]
    assert_each_case_is_one_line_and_writes_nothing(sweep_main, base, SWEEP_PLAN_CASES, output, tmp_path, capsys)
    assert sweep_main(base) == 0 and (output / "sweep.json").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(controls=["lucky_guess"]), "unknown control 'lucky_guess'"),
    (lambda d: d.update(controls="r"), "controls is 'r', expected a list (each a non-empty string)"),
    (lambda d: d.update(tasks=["s"]), "unknown task 's'"),
    (lambda d: d.pop("transfer"), "transfer is missing, expected an object with sources, targets"),
    (lambda d: d.update(transfer="all"), "transfer is 'all', expected an object with sources, targets"),
    (lambda d: d.update(sparsity={"rte": 0.7}), "sparsity 0.7 is not a sparsity IMP reaches"),
    (lambda d: d["config"].update(seeds=[-1]), "seeds must be whole numbers"),
    (lambda d: d["config"].update(learning_rate="fast"), "sweep.json"),
    (None, "sweep.json is missing or damaged (JSONDecodeError)"),
])
def test_a_hand_edited_sweep_json_is_one_line_naming_it(tiny, tmp_path, capsys, edit, message):
    output = tmp_path / "sweep"
    assert sweep_main(["plan", "--tasks", "rte", *tiny, "--target-sparsity", "0.1", "--output", str(output)]) == 0
    capsys.readouterr()
    path = output / "sweep.json"
    if edit is None:
        path.write_text(path.read_text()[:40])
    else:
        definition = json.loads(path.read_text())
        edit(definition)
        path.write_text(json.dumps(definition))
    for command in ("run", "status", "merge"):
        line = one_line_error(sweep_main, [command, "--output", str(output)], capsys)
        assert message in line and str(path) in line, line


def test_weights(tiny_checkpoint, tmp_path, capsys):
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", garbage)
    (garbage / "pytorch_model.bin").write_bytes(b"not a zip")
    for argv, message in [([str(tmp_path / "nowhere")], "is neither a local checkpoint nor a known name"),
                          ([str(tiny_checkpoint), "--head", "bogus"], "invalid choice: 'bogus'"),
                          ([str(garbage)], "not a whole PyTorch file"),
                          ([""], "argument checkpoint: an empty value; give a value")]:
        assert message in one_line_error(weights_main, argv, capsys)
    assert weights_main([str(tiny_checkpoint), "--head", "mlm"]) == 0


def test_torch_advice_to_unpickle_is_never_passed_on(tiny_checkpoint, tmp_path, capsys):
    """A .bin holding Python objects is refused without repeating torch's advice to set weights_only=False."""
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", folder)
    torch.save({"weights": torch.ones(2), "extra": PickledThing()}, folder / "pytorch_model.bin")
    line = one_line_error(weights_main, [str(folder)], capsys)
    assert "holds Python objects beside tensors, which minilth does not unpickle" in line


class PickledThing:
    """An object torch.save pickles and torch.load(weights_only=True) refuses."""


# --- files a run reads back: damaged, rerun, repaired --------------------------------------------------------


def truncate(path):
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def test_a_damaged_control_result_is_run_again_and_says_so(tiny_rte_imp_run, tmp_path, caplog):
    from minilth.lottery.baselines import run_controls
    _, imp = tiny_rte_imp_run
    first = run_controls(imp, 0.2, ["random_pruning", "standard_pruning"], [0], tmp_path, progress=False, echo=None)
    damaged = tmp_path / "sparsity_0.20" / "random_pruning" / "seed_0.json"
    truncate(damaged)
    partial = tmp_path / "sparsity_0.20" / "standard_pruning" / ".seed_0.partial.pt"
    partial.write_bytes(b"damaged")  # as if a later run had been killed while writing it
    (tmp_path / "sparsity_0.20" / "standard_pruning" / "seed_0.json").unlink()
    caplog.clear()
    again = run_controls(imp, 0.2, ["random_pruning", "standard_pruning"], [0], tmp_path, progress=False, echo=None)
    assert f"{damaged} is missing or damaged (JSONDecodeError): it is run again" in caplog.text
    assert f"{partial} is missing or damaged" in caplog.text and "starts this seed over" in caplog.text
    strip = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert [strip(r) for runs in again.values() for r in runs] == [strip(r) for runs in first.values() for r in runs]
    assert not partial.exists()


def test_a_damaged_transfer_record_is_done_again(tiny_rte_imp_run, tiny, tmp_path, capsys, caplog):
    _, imp = tiny_rte_imp_run
    output = tmp_path / "transfer"
    argv = ["--masks", str(imp), "--tasks", "rte", *tiny, "--output", str(output), "--quiet"]
    assert transfer_main(argv) == 0
    before = json.loads((output / "transfer.json").read_text())["runs"]
    for damage, said in ((truncate, "transfer.json is missing or damaged"),
                         (wrong_type, ".metrics.acc is 'x', expected a number or null")):
        damage(output / "transfer.json")
        caplog.clear()
        assert transfer_main(argv) == 0
        assert said in caplog.text and "done again" in caplog.text, caplog.text
        after = json.loads((output / "transfer.json").read_text())["runs"]
        assert {k: v["metrics"] for k, v in after.items()} == {k: v["metrics"] for k, v in before.items()}


def wrong_type(path):
    record = json.loads(path.read_text())
    next(iter(record["runs"].values()))["metrics"]["acc"] = "x"
    path.write_text(json.dumps(record))


def test_a_truncated_sweep_result_is_not_done_and_the_next_run_redoes_it(tiny, tmp_path, capsys):
    output = tmp_path / "sweep"
    assert sweep_main(["plan", "--tasks", "rte", *tiny, "--target-sparsity", "0.1", "--transfer", "--output",
                       str(output)]) == 0
    assert sweep_main(["run", "--output", str(output), "--quiet"]) == 0
    cell = output / "transfer" / "rte_to_rte" / "seed_0.json"
    metrics = json.loads(cell.read_text())["metrics"]
    truncate(cell)
    capsys.readouterr()
    assert sweep_main(["status", "--output", str(output)]) == 0
    assert "2 done, 1 ready, 0 waiting" in capsys.readouterr().out  # IMP and the dense baseline; the cell is not
    assert sweep_main(["run", "--output", str(output), "--quiet"]) == 0
    assert json.loads(cell.read_text())["metrics"] == metrics


def test_a_diverging_learning_rate_is_named_as_the_cause(tiny, tmp_path, capsys):
    """1e300 makes the weights nan after the first step: the line names the learning rate, not magnitude pruning."""
    line = one_line_error(find_ticket_main, ["--task", "rte", *tiny, "--learning-rate", "1e300", "--output",
                                             str(tmp_path / "run"), "--quiet"], capsys)
    assert "training diverged; lower --learning-rate (now 1e+300)" in line and "the largest weight is nan" in line


def test_an_undefined_metric_is_never_a_silent_nan(caplog):
    """A correlation of constant predictions is a model that learned nothing: 0, said; of constant gold scores, an
    evaluation set that cannot score the task: one line."""
    import numpy as np

    from minilth.data import get_task
    from minilth.data.scoring import score
    from minilth.errors import DataError

    task = get_task("stsb")
    data = type("Data", (), {"features": [{"labels": v} for v in (1.0, 2.5, 4.0)]})()
    metrics = score(task, data, [torch.ones(3, 1)])
    assert metrics["pearson"] == 0.0 and metrics["spearman"] == 0.0 and "counted as 0" in caplog.text
    assert not any(np.isnan(v) for v in metrics.values())
    same = type("Data", (), {"features": [{"labels": 2.0} for _ in range(3)]})()
    with pytest.raises(DataError, match="is undefined on 3 evaluation examples with the same gold score"):
        score(task, same, [torch.tensor([[1.0], [2.0], [3.0]])])
