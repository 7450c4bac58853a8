"""Every file minilth reads back, of every kind: read through its schema, belonging to the settings and checkpoint
that made it, and old folders (written before files carried a fingerprint) still read.

One table holds every kind against wrong types, wrong ranges, missing keys, a folder in the file's place and valid
torch files of the wrong structure: the reader names the file, the field and what is expected in one line; a file
minilth wrote is then redone, saying so, and a folder is refused, never written over.
"""
import dataclasses
import json
import shutil

import pytest
import torch

from minilth.checkpoints import load_mask, resolve_checkpoint, save_mask
from minilth.checkpoints.pretrained import checkpoint_digest
from minilth.config import Experiment, TicketConfig
from minilth.data import get_task
from minilth.data.squad import read_squad
from minilth.errors import MinilthError
from minilth.lottery.baselines import check_result, run_controls, stored_result
from minilth.lottery.mask_transfer import DENSE, find_mask, read_record, transfer_matrix
from minilth.lottery.run_folder import TicketRun, check_same_config, fingerprint, load_config, read_rounds, read_run
from minilth.lottery.verdict import summary_problem
from minilth.prune import Mask
from minilth.scale.grid import Job, Runner, define, load_sweep, read_cell, save_sweep
from minilth.schemas import STANDARD_PRUNING_PARTIAL, FileError, read_torch
from minilth.ticket import find_ticket

from conftest import FIXTURES

RUN = "imp"  # the workspace's IMP run: rounds at 0, 10% and 20%, rewinding to theta_i
CONTROL = "imp/controls/sparsity_0.20/random_pruning/seed_0.json"
CELL = "sweep/transfer/dense_to_rte/seed_0.json"


@pytest.fixture(scope="module")
def workspace(tiny_checkpoint, glue_dir, tmp_path_factory):
    """A file of every kind, as minilth writes them: an IMP run rewinding to theta_i (imp/), one control result,
    a transfer record (transfer/), a sweep with a transfer cell (sweep/) and a SQuAD sample."""
    root = tmp_path_factory.mktemp("every_kind")
    tiny = dict(task="rte", model=str(tiny_checkpoint), data_dir=str(glue_dir), max_train_examples=16,
                max_eval_examples=8, epochs=1, batch_size=8, device="cpu")
    find_ticket(TicketConfig(**tiny, target_sparsity=0.2, rewind_at=0.5), root / RUN, progress=False, echo=None)
    run_controls(root / RUN, 0.2, ["random_pruning"], [0], progress=False, echo=None)
    transfer_matrix([root / RUN], [get_task("rte")], Experiment(**tiny), root / "transfer", progress=False, echo=None)
    sweep = define(root / "sweep", TicketConfig(**tiny, target_sparsity=0.1), ["rte"], transfer_targets=["rte"])
    save_sweep(sweep)
    Runner(sweep, progress=False).run(Job("transfer", "rte", source=DENSE, seed=0))  # a cell that needs no IMP job
    shutil.copy(FIXTURES / "squad_tiny.json", root / "squad.json")
    return root


def copy(workspace, tmp_path):
    shutil.copytree(workspace, tmp_path / "w")
    return tmp_path / "w"


# --- the damages --------------------------------------------------------------------------------------------------


def edit(change):
    """A damage that loads a JSON file, changes it and writes it back."""
    def damage(path):
        content = json.loads(path.read_text())
        change(content)
        path.write_text(json.dumps(content))
    return damage


def set_(key, value):
    """Sets a (dotted) key: `set_("metrics.acc", "x")`; `*` is the first key of a map, a number a list's item."""
    def change(content):
        *parents, last = key.split(".")
        for part in parents:
            content = content[int(part) if isinstance(content, list) else next(iter(content)) if part == "*" else part]
        content[last] = value
    return edit(change)


def drop(key):
    return edit(lambda content: content.pop(key))


def torch_file(value):
    """A damage that replaces the file with a valid torch file holding `value`."""
    return lambda path: torch.save(value, path)


def a_folder(path):
    path.unlink()
    path.mkdir()


def dense_mask(path):
    mask = load_mask(path)
    save_mask(Mask({name: torch.ones_like(flag) for name, flag in mask.items()}), path)


def mask_of_another_model(path):
    save_mask(Mask({"bert.encoder.layer.0.attention.self.query.weight": torch.ones(8, 8, dtype=torch.bool)}), path)


def before_fingerprints(folder):
    """Makes a run look as minilth wrote it before rounds and results carried a fingerprint."""
    for path in [*folder.glob("rounds/*/metrics.json"), *folder.glob("controls/*/*/seed_*.json")]:
        content = json.loads(path.read_text())
        for key in ("fingerprint", "files", "imp_mask", "mask_file"):
            content.pop(key, None)
        path.write_text(json.dumps(content))


# --- the readers: how each command reads each kind ----------------------------------------------------------------


def read_imp(root):
    return read_run(root / RUN, with_data=False)


def read_summary(root):
    run = read_imp(root)
    problem = summary_problem(run.folder, run.rounds, run.task)
    if problem:
        raise FileError(problem)


def read_control(root):
    run = read_imp(root)
    return check_result(root / CONTROL, run, run.rounds[2].mask)


def read_partial(root):
    return read_torch(root / "partial.pt", STANDARD_PRUNING_PARTIAL)


READERS = {"round": read_imp, "config": read_imp, "summary": read_summary, "control": read_control,
           "partial": read_partial, "transfer": lambda root: read_record(root / "transfer/transfer.json"),
           "sweep": lambda root: load_sweep(root / "sweep"), "cell": lambda root: read_cell(root / CELL),
           "squad": lambda root: read_squad(root / "squad.json"), "mask given": lambda root: find_mask(root / "m.pt")}

ROUND_1 = "imp/rounds/round_01"
# (kind, file, damage, old: the run as written before fingerprints, so that the schema and not a digest speaks,
#  what the one line says after the file's name)
CASES = [
    ("round", f"{ROUND_1}/metrics.json", set_("metrics", "x"), False, "metrics is 'x', expected a list of at least one"),
    ("round", f"{ROUND_1}/metrics.json", set_("metrics", []), False, "metrics is [], expected a list of at least one"),
    ("round", f"{ROUND_1}/metrics.json", set_("metrics", [{}]), False, "metrics[0].acc is missing, expected a number"),
    ("round", f"{ROUND_1}/metrics.json", set_("metrics", [{"acc": "high"}]), False,
     "metrics[0].acc is 'high', expected a number in [0, 1]"),
    ("round", f"{ROUND_1}/metrics.json", set_("metrics", [{"acc": 1.5}]), False,
     "metrics[0].acc is 1.5, expected a number in [0, 1]"),
    ("round", f"{ROUND_1}/metrics.json", set_("seconds", "slow"), False, "seconds is 'slow', expected a number"),
    ("round", f"{ROUND_1}/metrics.json", set_("sparsity", 0.9), False,
     "holds round 1 at sparsity 0.9, where this run's round 1 is at 0.1"),
    ("round", f"{ROUND_1}/metrics.json", drop("round"), False, "round is missing, expected a whole number"),
    ("round", f"{ROUND_1}/metrics.json", set_("fingerprint.settings.epochs", 2.0), False,
     "was made with other settings (epochs differ)"),
    ("round", f"{ROUND_1}/mask.pt", dense_mask, False, "is missing, or is not the file round 1 wrote"),
    ("round", f"{ROUND_1}/mask.pt", torch_file([1, 2, 3]), True,
     "the file is [1, 2, 3], expected an object with format"),
    ("round", f"{ROUND_1}/mask.pt", mask_of_another_model, True, "masks other matrices than this run prunes"),
    ("round", "imp/rounds/round_00/next_mask.pt", dense_mask, True,
     "prunes 0.00% of the weights, not what round 1 of this run prunes (10%)"),
    ("round", f"{ROUND_1}/heads.pt", torch_file([1, 2, 3]), True,
     "the file is [1, 2, 3], expected a map of seeds to {name: tensor}"),
    ("round", f"{ROUND_1}/heads.pt", torch_file({1: {"classifier.weight": torch.ones(2, 32)}}), True,
     "holds seeds [1], where the run's are [0]"),
    ("round", f"{ROUND_1}/heads.pt", torch_file({0: {"classifier.weight": torch.ones(3, 32)}}), True,
     "seed 0's tensors do not fit the run's model"),
    ("round", "imp/theta_i.pt", torch_file({"step": "x", "weights": {}}), True,
     "step is 'x', expected a whole number of at least 0"),
    ("round", "imp/theta_i.pt", torch_file({"step": 1}), True, "weights is missing"),
    ("config", "imp/config.json", set_("learning_rate", "fast"), False,
     "learning_rate is 'fast', expected a number or null"),
    ("config", "imp/config.json", set_("batch_size", 1.5), False, "batch_size is 1.5, expected a whole number or null"),
    ("config", "imp/config.json", drop("task"), False, "task is missing, expected a non-empty string"),
    ("config", "imp/config.json", set_("seeds", [-3]), False, "seeds must be whole numbers from 0 to 4294967295"),
    ("config", "imp/config.json", set_("schedule", "cosine"), False, "schedule is 'cosine', expected one of original"),
    ("summary", "imp/summary.json", set_("rounds", "ab"), False, "rounds is 'ab', expected a list of at least one"),
    ("summary", "imp/summary.json", set_("noise", -1), False, "noise is -1, expected a number of at least 0"),
    ("summary", "imp/summary.json", drop("dense_mean"), False, "dense_mean is missing, expected a number"),
    ("control", CONTROL, set_("metrics", "x"), False, "metrics is 'x', expected an object with acc"),
    ("control", CONTROL, set_("metrics.acc", "x"), False, "metrics.acc is 'x', expected a number in [0, 1]"),
    ("control", CONTROL, set_("imp_sparsity", 2), False, "imp_sparsity is 2, expected a number in [0, 1]"),
    ("control", CONTROL, set_("seed", -1), False, "seed is -1, expected a seed"),
    ("control", CONTROL, drop("control"), False, "control is missing, expected a non-empty string"),
    ("control", CONTROL, set_("task", "mrpc"), False, "holds random_pruning seed 0 of mrpc, not what its path"),
    ("control", CONTROL, set_("fingerprint.checkpoint", "0123"), False,
     "was made with other settings (the checkpoint's weights differ)"),
    ("control", CONTROL.replace(".json", ".mask.pt"), torch_file([1]), False,
     "is missing, or is not the mask its result was made with"),
    ("partial", "partial.pt", torch_file([1, 2, 3]), False, "the file is [1, 2, 3], expected an object with flags"),
    ("partial", "partial.pt", torch_file({"flags": {"w": torch.ones(2)}, "state": {}, "records": "[]"}), False,
     "flags.w is a tensor of shape (2,), expected a torch.bool tensor"),
    ("transfer", "transfer/transfer.json", set_("runs.*.metrics.acc", "x"), False,
     ".metrics.acc is 'x', expected a number"),
    ("transfer", "transfer/transfer.json", set_("sources", "x"), False, "sources is 'x', expected a map"),
    ("transfer", "transfer/transfer.json", drop("settings"), False, "settings is missing"),
    ("sweep", "sweep/sweep.json", set_("transfer", "all"), False,
     "transfer is 'all', expected an object with sources, targets"),
    ("sweep", "sweep/sweep.json", set_("controls", "r"), False, "controls is 'r', expected a list"),
    ("sweep", "sweep/sweep.json", set_("sparsity.rte", 2), False, "sparsity.rte is 2, expected a number in [0, 1]"),
    ("sweep", "sweep/sweep.json", drop("tasks"), False, "tasks is missing"),
    ("cell", CELL, set_("metrics.acc", "x"), False, "metrics.acc is 'x', expected a number"),
    ("cell", CELL, set_("metrics.acc", 7), False, "metrics.acc is 7, expected a number in [0, 1]"),
    ("cell", CELL, set_("seed", "0"), False, "seed is '0', expected a seed"),
    ("cell", CELL, drop("target"), False, "target is missing"),
    ("squad", "squad.json", set_("data.0.paragraphs.0.qas.0.answers", "abc"), False,
     "data[0].paragraphs[0].qas[0].answers is 'abc', expected a list"),
    ("squad", "squad.json", set_("data", []), False, "data is [], expected a list of at least one"),
    ("squad", "squad.json", set_("data.0.paragraphs.0.qas.0.answers.0.answer_start", -1), False,
     "answer_start is -1, expected a whole number of at least 0"),
    ("mask given", "m.pt", torch_file({"format": "minilth-mask", "names": "x"}), False, "version is missing"),
]
# A file of every kind with a folder in its place (a mask given to transfer may be a folder: a find_ticket run's).
FOLDERS = sorted({(kind, path) for kind, path, *_ in CASES if kind != "mask given"})


@pytest.mark.parametrize("kind, path, damage, old, message", CASES,
                         ids=[f"{kind}:{path.split('/')[-1]}:{message[:30]}" for kind, path, _, _, message in CASES])
def test_each_file_kind_names_the_file_and_the_field_in_one_line(workspace, tmp_path, caplog, kind, path, damage,
                                                                  old, message):
    root = copy(workspace, tmp_path)
    if old:
        before_fingerprints(root / RUN)
    if not (root / path).exists():  # the partial and a mask given to transfer: written by the damage
        (root / path).write_bytes(b"")
    damage(root / path)
    with pytest.raises(MinilthError) as error:
        READERS[kind](root)
    line = str(error.value)
    assert str(root / path) in line and message in line and "\n" not in line, line
    if kind == "round":  # resuming trains the round again, saying so, and the rounds after it
        index = int(path.split("round_0")[1][0]) if "round_0" in path else 0
        caplog.clear()
        rounds, _ = read_rounds(resumed(root / RUN), repair=True)
        assert len(rounds) == index and f"round {index} is trained again" in caplog.text, caplog.text
    if kind == "control":  # the controls run it again, saying so
        run = read_imp(root)
        result = root / CONTROL
        assert stored_result(result, run, run.rounds[2].mask) is None and not result.exists()
        assert "it is run again" in caplog.text
    if kind == "cell":  # not finished: the sweep's next run does it again
        sweep = load_sweep(root / "sweep")
        assert not sweep.finished(next(job for job in sweep.jobs() if sweep.output(job) == root / CELL))


@pytest.mark.parametrize("kind, path", FOLDERS, ids=[f"{kind}:{path}" for kind, path in FOLDERS])
def test_a_folder_in_a_files_place_is_refused_not_written_over(workspace, tmp_path, caplog, kind, path):
    root = copy(workspace, tmp_path)
    if not (root / path).exists():
        (root / path).write_bytes(b"")
    a_folder(root / path)
    with pytest.raises(MinilthError, match=f"{root / path} is a folder, where minilth keeps a file; move the folder "
                                           f"away"):
        READERS[kind](root)
    if kind == "round":
        with pytest.raises(MinilthError, match="is a folder"):
            read_rounds(resumed(root / RUN), repair=True)
    assert (root / path).is_dir() and "again" not in caplog.text


def resumed(folder) -> TicketRun:
    """The run as find_ticket resumes it (start_run, without its data): config.json there and matching."""
    config = load_config(folder)
    checkpoint = resolve_checkpoint(config.model)
    return TicketRun(config, get_task(config.task), checkpoint, folder, (), [], mask=None,
                     fingerprint=fingerprint(config, checkpoint))


# --- a round belongs to the settings and the checkpoint that made it -----------------------------------------------


def config_of(workspace) -> TicketConfig:
    return load_config(workspace / RUN)


@pytest.mark.parametrize("changes, differ", [(dict(epochs=2.0, learning_rate=5e-5), "epochs, learning_rate differ"),
                                             (dict(seeds=[0, 1]), "seeds differ"),
                                             (dict(task="stsb"), "task differ")])
def test_without_its_config_json_a_run_is_still_refused_under_other_settings(workspace, tmp_path, changes, differ):
    """Deleting config.json (as an old message advised) must not let other settings adopt the rounds."""
    root = copy(workspace, tmp_path)
    (root / RUN / "config.json").unlink()
    config = dataclasses.replace(config_of(workspace), **changes)
    with pytest.raises(MinilthError, match=rf"holds a run with a different config \({differ}\); use another --output"):
        find_ticket(config, root / RUN, progress=False, echo=None)
    assert not (root / RUN / "config.json").exists()  # refused before the folder is claimed


def test_rounds_of_other_weights_are_refused_and_a_changed_checkpoint_has_another_digest(workspace, tiny_checkpoint,
                                                                                        tmp_path):
    config = config_of(workspace)
    made_by = fingerprint(config, config.model)
    with pytest.raises(MinilthError, match=r"different config \(the checkpoint's weights differ\)"):
        check_same_config(workspace / RUN, config, {**made_by, "checkpoint": "0123456789abcdef"})
    other = tmp_path / "tiny"
    shutil.copytree(tiny_checkpoint, other)
    state = torch.load(other / "pytorch_model.bin", weights_only=True)
    assert checkpoint_digest(other) == made_by["checkpoint"]  # the same files, wherever they lie
    state["bert.pooler.dense.bias"][0] += 1
    torch.save(state, other / "pytorch_model.bin")
    assert checkpoint_digest(other) != made_by["checkpoint"]


def test_a_run_written_before_fingerprints_is_adopted_when_its_config_json_matches_and_redone_without_it(
        workspace, tmp_path, caplog):
    root = copy(workspace, tmp_path)
    before_fingerprints(root / RUN)
    stored = read_run(workspace / RUN, with_data=False)
    run = read_run(root / RUN, with_data=False)  # reports read it
    assert [r.metrics for r in run.rounds] == [r.metrics for r in stored.rounds]
    caplog.clear()
    results = run_controls(root / RUN, 0.2, ["random_pruning"], [0], progress=False, echo=None)  # its result adopted
    assert results["random_pruning"] == [json.loads((root / CONTROL).read_text())] and "again" not in caplog.text
    rounds = find_ticket(config_of(workspace), root / RUN, progress=False, echo=None)  # resumed: nothing to train
    assert [r.metrics for r in rounds] == [r.metrics for r in stored.rounds] and "again" not in caplog.text

    (root / RUN / "config.json").unlink()  # then nothing says what trained them
    find_ticket(config_of(workspace), root / RUN, progress=False, echo=None)
    assert (f"{root / RUN / 'rounds/round_00/metrics.json'} was written before rounds recorded their settings, and "
            f"config.json is missing: what trained it is unknown: round 0 is trained again") in caplog.text
    assert "fingerprint" in json.loads((root / RUN / "rounds/round_02/metrics.json").read_text())
