"""Sweeps: the grid as one job list, shards that split it exactly, jobs that wait for their IMP run, resume,
and a merge of 3 shards that gives the tables of one process, number for number."""
import contextlib
import io
import json
import shutil
from collections import Counter

import pytest

import minilth.scale.grid as sweep_module
from minilth.config import TicketConfig
from minilth.errors import MinilthError
from minilth.lottery.baselines import TABLE_2
from minilth.lottery.run_folder import start_run
from minilth.scale.grid import Job, define, load_sweep, parse_shard, shard
from minilth.sweep import main

TABLES = ["controls/rte/sparsity_0.10/table2.csv", "controls/rte/sparsity_0.10/table2.md",
          "controls/mrpc/sparsity_0.10/table2.csv", "controls/mrpc/sparsity_0.10/table2.md",
          "transfer/transfer.csv", "transfer/transfer_heatmap.csv"]


def cli(*args) -> tuple[int, str, str]:
    """Runs `python -m minilth.sweep ARGS` in this process; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit_:  # argparse's errors
            status = exit_.code
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def grid(tiny_checkpoint, glue_dir) -> list[str]:
    """The plan's flags: IMP on RTE and MRPC to 10% with 2 seeds, 2 controls, both masks and dense onto STS-B."""
    return ["--tasks", "rte", "mrpc", "--controls", "random_pruning", "random_reinit", "--transfer", "stsb",
            "--model", tiny_checkpoint, "--data-dir", glue_dir, "--target-sparsity", "0.1", "--seeds", "0", "1",
            "--max-train-examples", "8", "--max-eval-examples", "8", "--epochs", "1", "--batch-size", "8",
            "--device", "cpu"]


@pytest.fixture(scope="module")
def one_process(grid, tmp_path_factory):
    """The whole sweep run by one process (--shard 1/1), then merged: (folder, merge's output)."""
    folder = tmp_path_factory.mktemp("one_process")
    assert cli("plan", "--output", folder, *grid)[0] == 0
    status, out, _ = cli("run", "--output", folder, "--shard", "1/1", "--quiet")
    assert status == 0 and "shard 1/1: 16 ran, 0 done already, 0 waiting" in out
    status, merged, _ = cli("merge", "--output", folder)
    assert status == 0
    return folder, merged


@pytest.fixture(scope="module")
def sharded(grid, tmp_path_factory):
    """The same sweep in 3 shards run one after another, twice (the second pass does the jobs that waited), with
    shard 1's second pass interrupted once; merged after each pass. Returns what each step printed and left."""
    folder = tmp_path_factory.mktemp("sharded")
    assert cli("plan", "--output", folder, *grid)[0] == 0
    steps = {"first": [cli("run", "--output", folder, "--shard", f"{i}/3", "--quiet") for i in (1, 2, 3)]}
    steps["first merge"] = cli("merge", "--output", folder)
    steps["first mrpc table"] = (folder / "controls/mrpc/sparsity_0.10/table2.csv").read_text()
    sweep = load_sweep(folder)
    steps["finished first"] = {job: sweep.output(job).stat().st_mtime_ns
                               for job in sweep.jobs() if sweep.state(job) == "done"}
    calls, real_control = [], sweep_module.run_one_control

    def interrupted_at_the_second(*args, **kwargs):
        calls.append(args[2:4])  # (control, seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_control(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_module, "run_one_control", interrupted_at_the_second)
        steps["interrupted"] = cli("run", "--output", folder, "--shard", "1/3", "--quiet")
    steps["interrupted calls"] = calls
    steps["second"] = [cli("run", "--output", folder, "--shard", f"{i}/3", "--quiet") for i in (1, 2, 3)]
    steps["merge"] = cli("merge", "--output", folder)
    return folder, steps


def test_shares_are_balanced_disjoint_and_cover_the_grid(tmp_path):
    config = TicketConfig(task="rte", seeds=[0, 1, 2], target_sparsity=0.5)
    sweep = define(tmp_path, config, ["rte", "mrpc", "stsb", "cola"], TABLE_2, transfer_targets=["rte", "mrpc", "sst2"])
    jobs = sweep.jobs()
    kinds = Counter(job.kind for job in jobs)
    # 4 IMP runs; 4 tasks x 4 controls x 3 seeds; (4 sources + dense) x 3 targets x 3 seeds
    assert (kinds["imp"], kinds["control"], kinds["transfer"]) == (4, 48, 45) and len(set(jobs)) == len(jobs)
    assert jobs == define(tmp_path, config, ["rte", "mrpc", "stsb", "cola"], TABLE_2,
                          transfer_targets=["rte", "mrpc", "sst2"]).jobs()  # the same list every time
    for count in (1, 2, 3, 7, 10, len(jobs), len(jobs) + 3):
        shares = [shard(jobs, index, count) for index in range(1, count + 1)]
        assert sorted(map(repr, sum(shares, []))) == sorted(map(repr, jobs))  # disjoint, and all of them
        sizes = [len(share) for share in shares]
        assert max(sizes) - min(sizes) <= 1
        imp = [sum(job.kind == "imp" for job in share) for share in shares]
        assert max(imp) - min(imp) <= 1  # the long jobs spread too
        for share in shares:
            kinds_in_order = [job.kind == "imp" for job in share]
            assert kinds_in_order == sorted(kinds_in_order, reverse=True)  # IMP jobs first


def test_shard_strings(monkeypatch):
    assert parse_shard("1/3") == (1, 3) and parse_shard("3/3") == (3, 3) and parse_shard("1/1") == (1, 1)
    for text, message in [("0/3", r"counted from 1, so I must be 1 to 3 \(in a SLURM array, .* pass --shard slurm"),
                          ("4/3", "I must be 1 to 3"), ("1/0", "must be at least 1"), ("2", "is not I/N"),
                          ("a/b", "is not I/N"), ("1/2/3", "is not I/N")]:
        with pytest.raises(MinilthError, match=message):
            parse_shard(text, {})
    array = {"SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "10"}
    assert parse_shard("slurm", {**array, "SLURM_ARRAY_TASK_ID": "0"}) == (1, 10)
    assert parse_shard("slurm", {**array, "SLURM_ARRAY_TASK_ID": "9"}) == (10, 10)
    one_based = {"SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "10"}
    assert parse_shard("SLURM", {**one_based, "SLURM_ARRAY_TASK_ID": "1"}) == (1, 10)
    stepped = {"SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "5", "SLURM_ARRAY_TASK_STEP": "2"}
    assert parse_shard("slurm", {**stepped, "SLURM_ARRAY_TASK_ID": "8"}) == (5, 5)
    with pytest.raises(MinilthError, match="run it in an `sbatch --array` job"):
        parse_shard("slurm", {"SLURM_ARRAY_TASK_ID": "3"})
    with pytest.raises(MinilthError, match="not one of 3 evenly spaced tasks"):  # --array=1,2,7
        parse_shard("slurm", {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"})
    status, out, err = cli("run", "--output", "anywhere", "--shard", "0/3")
    assert status == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: --shard 0/3")


def test_plan_writes_the_definition_and_refuses_another(grid, tmp_path):
    status, out, _ = cli("plan", "--output", tmp_path, *grid)
    assert status == 0
    assert "16 jobs (2 imp, 8 control, 6 transfer) with seeds [0, 1]" in out
    assert "control mrpc random_reinit seed 1" in out and "transfer dense->stsb seed 0" in out
    assert "transfer/rte_to_stsb/seed_1.json" in out and "controls/rte/sparsity_0.10/random_pruning/seed_0.json" in out
    stored = json.loads((tmp_path / "sweep.json").read_text())
    assert stored["tasks"] == ["rte", "mrpc"] and stored["sparsity"] == {"rte": 0.1, "mrpc": 0.1}
    assert stored["transfer"] == {"sources": ["rte", "mrpc"], "targets": ["stsb"]}
    assert "task" not in stored["config"] and stored["config"]["seeds"] == [0, 1]
    assert cli("plan", "--output", tmp_path, *grid)[0] == 0  # the same definition again: fine
    assert cli("plan", "--output", tmp_path, *grid, "--data-dir", tmp_path)[0] == 0  # placement may move
    before = (tmp_path / "sweep.json").read_text()
    for extra, changed in [(["--learning-rate", "1e-3"], "config.learning_rate"),
                           (["--controls", "oneshot"], "controls"), (["--seeds", "0"], "config.seeds")]:
        status, out, err = cli("plan", "--output", tmp_path, *grid, *extra)
        assert status == 2 and out == "" and err.count("\n") == 1
        assert f"holds another sweep ({changed} differ); use another --output" in err
    assert (tmp_path / "sweep.json").read_text() == before


@pytest.mark.parametrize("extra, message", [
    (["--sparsity", "0.3"], "--sparsity 0.3 is not a sparsity IMP reaches with these settings (0.1)"),
    (["--sparsity", "cola=0.1"], "--sparsity names cola, which is not one of the sweep's tasks"),
    (["--sparsity", "rte:0.1"], "takes one sparsity (0.5) or TASK=S pairs"),
    (["--sparsity", "1.5"], "--sparsity must be in (0, 1)"),
    (["--transfer-sources", "cola"], "transfer source cola is not one of --tasks (rte, mrpc)"),
    (["--controls", "lucky_guess"], "invalid choice: 'lucky_guess'"),
    (["--transfer", "rtx"], "unknown task 'rtx'"),
    (["--target-sparsity", "0"], "prunes nothing"),
])
def test_plan_bad_grids_are_one_line(grid, tmp_path, extra, message):
    status, out, err = cli("plan", "--output", tmp_path, *grid, *extra)
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "sweep.json").exists()


def test_transfer_options_need_targets_and_sources_of_the_sweep(tmp_path):
    config = TicketConfig(task="rte", target_sparsity=0.5)
    with pytest.raises(MinilthError, match="needs --transfer"):
        define(tmp_path, config, ["rte"], transfer_sources=["rte"])
    sweep = define(tmp_path, config, ["rte", "mrpc"], TABLE_2, transfer_targets=["cola"], transfer_sources=["mrpc"],
                   sparsity={"mrpc": 0.3, "rte": 0.2})
    assert sweep.sparsity == {"rte": 0.2, "mrpc": 0.3} and sweep.transfer_sources == ["mrpc"]
    waiting = [job for job in sweep.jobs() if sweep.needs(job)]
    assert {sweep.needs(job)[0].name for job in waiting} == {"imp rte", "imp mrpc"}
    assert {sweep.describe(job) for job in waiting if job.kind == "transfer"} == {"waits for imp mrpc (round 3, 30%)"}
    assert all(sweep.state(job) == "ready" for job in sweep.jobs() if job not in waiting)  # IMP and dense baselines


def test_jobs_wait_for_the_imp_round_they_read(sharded):
    folder, steps = sharded
    jobs_of = {i: shard(load_sweep(folder).jobs(), i, 3) for i in (1, 2, 3)}
    assert [job.name for job in jobs_of[1]][0] == "imp rte" and jobs_of[2][0].name == "imp mrpc"
    # Shard 1 runs first: its jobs that read MRPC's IMP run (shard 2's) wait, the rest run, exit status 0.
    status, out, _ = steps["first"][0]
    waiting = [job for job in jobs_of[1] if "mrpc" in (job.task, job.source) and job.kind != "imp"]
    assert status == 0 and len(waiting) == 3
    for job in waiting:
        assert f"skip {job.name}: waits for imp mrpc (round 1, 10%)" in out
        assert f"start {job.name}" not in out
    assert "start imp rte" in out and "finished imp rte" in out
    assert "shard 1/3: 3 ran, 0 done already, 3 waiting; run this shard again" in out
    assert "shard 2/3: 5 ran, 0 done already, 0 waiting" in steps["first"][1][1]
    assert "shard 3/3: 5 ran, 0 done already, 0 waiting" in steps["first"][2][1]
    sweep = load_sweep(folder)
    assert set(steps["finished first"]) == set(sweep.jobs()) - set(waiting)


def test_merge_of_a_partial_sweep_names_the_missing_jobs(sharded):
    status, out, _ = sharded[1]["first merge"]
    assert status == 0
    assert "3 of 16 jobs still missing:" in out
    for name in ("control mrpc random_pruning seed 0", "control mrpc random_reinit seed 1",
                 "transfer mrpc->stsb seed 1"):
        assert f"  {name}: ready" in out
    # MRPC's table holds what is finished: one seed of each control, two of dense and IMP.
    seeds = {row.split(",")[0]: row.split(",")[3] for row in sharded[1]["first mrpc table"].splitlines()[1:]}
    assert seeds == {"dense": "2", "imp": "2", "random_pruning": "1", "random_reinit": "1"}
    assert "Table 2, MRPC" in out and "Random re-init (shuffled)" in out


def test_merge_while_an_imp_job_trains_its_dense_round(grid, tmp_path):
    """A shard that has started an IMP job has written its run's settings and no round yet; merge reads the rest."""
    assert cli("plan", "--output", tmp_path, *grid)[0] == 0
    sweep = load_sweep(tmp_path)
    start_run(sweep.config_for("rte"), sweep.imp_folder("rte"), progress=False)
    status, out, err = cli("merge", "--output", tmp_path)
    assert status == 0 and err == "" and "Table 2, RTE" not in out
    assert "16 of 16 jobs still missing:" in out and "  imp rte: ready" in out


def test_an_interrupted_shard_resumes_and_redoes_nothing_finished(sharded, monkeypatch):
    folder, steps = sharded
    status, out, err = steps["interrupted"]
    assert status == 130 and "interrupted: run the same command again" in err
    assert steps["interrupted calls"] == [("random_pruning", 0), ("random_reinit", 1)]
    assert "finished control mrpc random_pruning seed 0" in out and "finished control mrpc random_reinit" not in out
    status, out, _ = steps["second"][0]
    assert status == 0 and "shard 1/3: 2 ran, 4 done already, 0 waiting" in out
    assert "start control mrpc random_pruning seed 0" not in out  # finished before the interruption
    for index in (1, 2):
        assert f"shard {index + 1}/3: 0 ran, 5 done already, 0 waiting" in steps["second"][index][1]
    sweep = load_sweep(folder)
    for job, mtime in steps["finished first"].items():
        assert sweep.output(job).stat().st_mtime_ns == mtime, f"{job.name} was written again"

    def no_work(*args, **kwargs):
        raise AssertionError("a finished job was run again")

    for name in ("find_ticket", "load_task_data", "run_one_control", "transfer"):
        monkeypatch.setattr(sweep_module, name, no_work)
    status, out, _ = cli("run", "--output", folder, "--shard", "1/1", "--quiet")
    assert status == 0 and "shard 1/1: 0 ran, 16 done already, 0 waiting" in out


def test_three_shards_merge_to_the_tables_of_one_process(sharded, one_process):
    folder, steps = sharded
    single, single_merge = one_process
    status, merged, _ = steps["merge"]
    assert status == 0 and "all 16 jobs are done" in merged
    assert merged.replace(str(folder), "<sweep>") == single_merge.replace(str(single), "<sweep>")
    for table in TABLES:
        assert (folder / table).read_text() == (single / table).read_text(), table
    # Every job's numbers, and the IMP masks, are those of the one process.
    sweep = load_sweep(folder)
    for job in sweep.jobs():
        if job.kind == "imp":
            for path in sorted((folder / "imp" / job.task / "rounds").glob("*/*")):
                relative = path.relative_to(folder)
                if path.name == "mask.pt":
                    assert path.read_bytes() == (single / relative).read_bytes(), relative
                elif path.name == "metrics.json":
                    assert json.loads(path.read_text())["metrics"] == json.loads((single / relative).read_text())["metrics"]
        else:
            ours, theirs = (json.loads(f.output(job).read_text()) for f in (sweep, load_sweep(single)))
            assert ours["metrics"] == theirs["metrics"], job.name
    # The tables hold the whole grid: Table 2 with both seeds of each setting, and the 3 x 1 transfer matrix.
    rows = (folder / "controls/mrpc/sparsity_0.10/table2.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["dense", "imp", "random_pruning", "random_reinit"]
    assert all(row.split(",")[3] == "2" for row in rows[1:])
    heatmap = (folder / "transfer/transfer_heatmap.csv").read_text().splitlines()
    assert heatmap[0] == "source,STS-B (pearson)" and [row.split(",")[0] for row in heatmap[1:]] == ["rte@10%",
                                                                                                   "mrpc@10%"]
    assert len((folder / "transfer/transfer.csv").read_text().splitlines()) == 1 + 6
    assert "rte@10%" in merged and "Table 2, RTE" in merged and "Random re-init (shuffled)" in merged


def test_status_lists_every_job_and_writes_nothing(sharded):
    folder, _ = sharded
    before = sorted(path for path in folder.rglob("*"))
    status, out, _ = cli("status", "--output", folder)
    assert status == 0 and "16 jobs (2 imp, 8 control, 6 transfer)" in out and ": 16 done, 0 ready, 0 waiting" in out
    assert sorted(path for path in folder.rglob("*")) == before


def test_a_missing_damaged_or_mismatched_definition_is_one_line(sharded, tmp_path):
    folder, _ = sharded
    status, out, err = cli("run", "--output", tmp_path / "nothing")
    assert status == 2 and err.count("\n") == 1 and "holds no sweep.json; define the sweep first" in err
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "sweep.json").write_text('{"format": "minilth sweep v2", "tasks": [')
    status, out, err = cli("merge", "--output", tmp_path / "damaged")
    assert status == 2 and err.count("\n") == 1 and "sweep.json is missing or damaged (JSONDecodeError)" in err
    # A definition edited by hand no longer matches the IMP runs it made: refused before any job runs.
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    definition = json.loads((copy / "sweep.json").read_text())
    definition["config"]["learning_rate"] = 1e-3
    (copy / "sweep.json").write_text(json.dumps(definition))
    for command in ("run", "merge"):
        status, out, err = cli(command, "--output", copy)
        assert status == 2 and err.count("\n") == 1
        assert "holds a run with a different config (learning_rate differ)" in err, err


def test_a_task_fine_tunes_with_its_own_settings_in_every_job(tmp_path):
    """The Table-2 grid on a CPU trains CoLA longer and SST-2 on a subsample: each task's own settings reach its IMP
    run, its controls and the transfer cells that fine-tune on it, and survive sweep.json."""
    config = TicketConfig(task="rte", seeds=[0, 1, 2], target_sparsity=0.6, rate=0.25, epochs=1)
    sweep = define(tmp_path, config, ["cola", "sst2", "rte"], TABLE_2, sparsity={"cola": 0.5, "sst2": 0.6, "rte": 0.6},
                   transfer_targets=["cola"], task_settings=["cola:epochs=3", "sst2:max_train_examples=20000"])
    assert sweep.config_for("cola").epochs == 3.0 and sweep.config_for("rte").epochs == 1
    assert sweep.config_for("sst2").max_train_examples == 20000 and sweep.config_for("cola").max_train_examples is None
    # the grid holds each (task, control, seed) once, each at its task's Table-2 sparsity
    controls = [(job.task, job.control, job.seed) for job in sweep.jobs() if job.kind == "control"]
    assert len(controls) == len(set(controls)) == 3 * len(TABLE_2) * 3
    assert {task: sweep.controls_folder(task).name for task in sweep.tasks} == {
        "cola": "sparsity_0.50", "sst2": "sparsity_0.60", "rte": "sparsity_0.60"}
    sweep_module.save_sweep(sweep)
    stored = load_sweep(tmp_path)
    assert stored.task_settings == {"cola": {"epochs": 3.0}, "sst2": {"max_train_examples": 20000}}
    assert stored.config_for("cola") == sweep.config_for("cola")
    for bad, message in ((["cola:epochs"], "takes TASK:NAME=VALUE"), (["cola:epochs=x"], "takes a float, got 'x'"),
                         (["cola:rate=0.3"], "a task may change only"), (["qqp:epochs=3"], "names qqp, which nothing here"),
                         (["cola:epochs=-1"], "--task-settings of cola ({'epochs': -1.0}): --epochs must be positive"),
                         ({"cola": {"group_by_length": "yes"}}, "takes true or false")):
        with pytest.raises(MinilthError, match=message.replace("(", r"\(").replace(")", r"\)")):
            define(tmp_path, config, ["cola", "sst2", "rte"], task_settings=bad)
