"""Sweeps: the paper's grid (tasks x seeds, the controls, the transfer matrix) as one explicit list of jobs
that n shells, or the tasks of a SLURM array, share between them.

    python -m minilth.sweep plan --output runs/grid --tasks stsb mrpc rte --controls random_pruning random_reinit \\
        --transfer --model all-MiniLM-L6-v2 --target-sparsity 0.5 --seeds 0 1 2
    python -m minilth.sweep run --output runs/grid --shard 1/3     # and 2/3, 3/3: anywhere, in any order
    python -m minilth.sweep merge --output runs/grid                # Table 2 of each task, the transfer matrix

`plan` writes the definition, sweep.json, that every shard reads: the settings every fine-tuning
shares (a TicketConfig without its task), the tasks, the controls and their sparsity, the transfer
cells. The jobs follow from it, always in this order, each with its own output:

    imp <task>                            find_ticket, all the seeds        imp/<task>/
    control <task> <control> seed <k>     a control at the task's sparsity  controls/<task>/sparsity_S/<control>/seed_k.json
    transfer <source>-><target> seed <k>  the source's IMP mask, fine-tuned transfer/<source>_to_<target>/seed_k.json
    transfer dense-><target> seed <k>     the target's dense baseline       transfer/dense_to_<target>/seed_k.json

Shard i of n takes jobs i, i+n, i+2n, ... of that list: shares differ by at most one job, and the
IMP jobs, which come first, are spread over the shards. A job depends on another only through
files: a control or a transfer needs its IMP run's round at its sparsity to be finished (that
round's metrics.json). A shard runs its IMP jobs first, then every other job whose inputs exist,
and skips the rest, naming the job each waits for; run the shard again once those are done. As
IMP jobs need nothing and the others need only IMP jobs, two passes of every shard always do the
whole grid. Every job resumes (find_ticket and the controls from their last finished step; a
transfer cell is written whole when done), so running a shard again redoes nothing that is finished.
In a SLURM array, `--shard slurm` reads the share from the array task's variables; under torchrun
the ranks of one shard run each of its jobs together.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from . import distributed, files
from .controls import (CONTROLS, DEFAULT_CONTROLS, controls_folder, result_path, round_at, run_one_control,
                       table2_results, write_table2)
from .errors import MinilthError, run_cli
from .prune import Mask
from .report import format_table2, render_table, table2
from .settings import add_arguments, add_command_options, from_arguments, from_dict
from .tasks import TASKS, get_task
from .ticket import (Experiment, TicketConfig, check_same_config, find_ticket, load_task_data, read_run,
                     round_dir)
from .train import FinetuneSettings
from .transfer import DENSE, fingerprint, format_matrix, summarize_matrix, transfer, write_outputs

DEFINITION = "sweep.json"
FORMAT = "minilth sweep"


class SweepError(MinilthError, ValueError):
    """A sweep that cannot be planned, read or split as asked."""


# --- the definition and its jobs -------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One unit of a sweep: an IMP run, one (control, seed), or one transfer cell (source or dense, target, seed)."""

    kind: str  # "imp", "control" or "transfer"
    task: str  # the task fine-tuned: IMP's and a control's task, a transfer's target
    control: str | None = None
    source: str | None = None  # transfer: the task whose IMP mask moves, or DENSE for the target's baseline
    seed: int | None = None  # None: an IMP job, which runs all the seeds

    @property
    def name(self) -> str:
        """Returns the job's name as the commands print it: 'control rte random_pruning seed 0'."""
        if self.kind == "imp":
            return f"imp {self.task}"
        if self.kind == "control":
            return f"control {self.task} {self.control} seed {self.seed}"
        return f"transfer {self.source}->{self.task} seed {self.seed}"


@dataclass
class Sweep:
    """A sweep's definition, as sweep.json holds it; every job, and the file it writes, follows from it."""

    folder: Path
    config: TicketConfig  # what every fine-tuning shares; its task is replaced by each job's
    tasks: list[str]  # one IMP job each
    controls: list[str]
    control_sparsity: dict[str, float]  # task -> the IMP round its Table 2 (and controls) compares
    transfer_sources: list[str]  # tasks of the sweep whose IMP masks move
    transfer_targets: list[str]
    transfer_sparsity: dict[str, float]  # source -> the IMP round whose mask moves

    def config_for(self, task: str) -> TicketConfig:
        """Returns the shared settings with the task set: what the task's jobs fine-tune with."""
        return dataclasses.replace(self.config, task=task)

    def jobs(self) -> list[Job]:
        """Returns every job of the sweep in its fixed order: IMP, then controls, then transfer cells."""
        seeds = self.config.seeds
        imp = [Job("imp", task) for task in self.tasks]
        controls = [Job("control", task, control=control, seed=seed)
                    for task in self.tasks for control in self.controls for seed in seeds]
        cells = [Job("transfer", target, source=source, seed=seed)
                 for target in self.transfer_targets for source in [DENSE, *self.transfer_sources] for seed in seeds]
        return imp + controls + cells

    # -- where each job writes --

    def imp_folder(self, task: str) -> Path:
        """Returns the find_ticket output folder of the task's IMP job: <sweep>/imp/<task>."""
        return self.folder / "imp" / task

    def controls_folder(self, task: str) -> Path:
        """Returns the folder of the task's controls (and its Table 2): <sweep>/controls/<task>/sparsity_S."""
        return controls_folder(self.folder / "controls" / task, self.control_sparsity[task])

    def output(self, job: Job) -> Path:
        """Returns the file whose existence means the job is finished."""
        if job.kind == "imp":
            return self.round_done(job.task, len(self.config.sparsities()) - 1)
        if job.kind == "control":
            return result_path(self.controls_folder(job.task), job.control, job.seed)
        return self.folder / "transfer" / f"{job.source}_to_{job.task}" / f"seed_{job.seed}.json"

    def where(self, job: Job) -> Path:
        """Returns where the job writes: its IMP folder, or its result file."""
        return self.imp_folder(job.task) if job.kind == "imp" else self.output(job)

    def round_done(self, task: str, index: int) -> Path:
        """Returns the file that marks round `index` of the task's IMP job finished (written last)."""
        return round_dir(self.imp_folder(task), index) / "metrics.json"

    # -- what each job needs --

    def needs(self, job: Job) -> tuple[Job, int] | None:
        """Returns (the IMP job, the round index) whose finished round the job reads, or None when it reads none."""
        if job.kind == "control":
            return Job("imp", job.task), self.round_index(self.control_sparsity[job.task])
        if job.kind == "transfer" and job.source != DENSE:
            return Job("imp", job.source), self.round_index(self.transfer_sparsity[job.source])
        return None

    def round_index(self, sparsity: float) -> int:
        """Returns the index of the IMP round at `sparsity` in the schedule (checked when the sweep is planned)."""
        return next(i for i, s in enumerate(self.config.sparsities()) if abs(s - sparsity) < 1e-6)

    def state(self, job: Job) -> str:
        """Returns "done", "ready" (its inputs exist) or "waiting" (for an IMP round still to finish)."""
        if self.output(job).exists():
            return "done"
        needed = self.needs(job)
        if needed is not None and not self.round_done(needed[0].task, needed[1]).exists():
            return "waiting"
        return "ready"

    def describe(self, job: Job) -> str:
        """Returns what an unfinished job still needs: 'waits for imp rte (round 5, 50%)', or how far it is."""
        state = self.state(job)
        if state == "waiting":
            needed, index = self.needs(job)
            return f"waits for {needed.name} (round {index}, {100 * self.config.sparsities()[index]:g}%)"
        if job.kind == "imp" and state == "ready":
            rounds = len(self.config.sparsities())
            done = next(i for i in range(rounds) if not self.round_done(job.task, i).exists())
            return f"{done} of {rounds} rounds done" if done else "ready"
        return state

    def source_label(self, source: str) -> str:
        """Returns a transfer source's row name, e.g. 'rte@50%' (the transfer CLI's names)."""
        return f"{source}@{100 * self.transfer_sparsity[source]:.0f}%"

    # -- sweep.json --

    def to_dict(self) -> dict:
        config = {k: v for k, v in self.config.to_dict().items() if k != "task"}
        return {"format": FORMAT, "tasks": self.tasks, "config": config, "controls": self.controls,
                "control_sparsity": self.control_sparsity,
                "transfer": {"sources": self.transfer_sources, "targets": self.transfer_targets,
                             "sparsity": self.transfer_sparsity}}


def define(output_dir: str | Path, config: TicketConfig, tasks: list[str], controls=DEFAULT_CONTROLS,
           control_sparsity: float | dict[str, float] | None = None, transfer_targets: list[str] = (),
           transfer_sources: list[str] | None = None,
           transfer_sparsity: float | dict[str, float] | None = None) -> Sweep:
    """Returns a checked sweep (nothing written): IMP on each task with `config`'s settings (its task is ignored),
    the controls at `control_sparsity`, and each source's mask transferred to each target.

    A sparsity is one value for all tasks, {task: value} for some, or None: each task's last IMP
    round. Transfer sources default to every task of the sweep; no targets, no transfer.
    """
    tasks = _task_names(tasks, "--tasks")
    if not tasks:
        raise SweepError("give at least one task with --tasks")
    unknown = [name for name in controls if name not in CONTROLS]
    if unknown:
        raise SweepError(f"unknown control '{unknown[0]}'; choose from {', '.join(CONTROLS)}")
    targets = _task_names(transfer_targets, "--transfer")
    sources = _task_names(tasks if transfer_sources is None else transfer_sources, "--transfer-sources")
    if (transfer_sources is not None or transfer_sparsity is not None) and not targets:
        raise SweepError("--transfer-sources and --transfer-sparsity need --transfer (the target tasks; alone: "
                         "every task of the sweep)")
    strangers = [source for source in sources if source not in tasks]
    if strangers:
        raise SweepError(f"transfer source {strangers[0]} is not one of --tasks ({', '.join(tasks)}); "
                         f"its IMP job makes the mask, so add it to --tasks")
    config = dataclasses.replace(config, task=tasks[0])
    return Sweep(Path(output_dir), config, tasks, list(dict.fromkeys(controls)),
                 _sparsities(control_sparsity, tasks, config, "--control-sparsity"),
                 sources if targets else [], targets,
                 _sparsities(transfer_sparsity, sources if targets else [], config, "--transfer-sparsity"))


def _task_names(names, option: str) -> list[str]:
    """Task names as the task table spells them, each once, in the order given."""
    tasks = [get_task(name).name for name in names]
    if len(set(tasks)) != len(tasks):
        raise SweepError(f"{option} names a task twice: {' '.join(names)}")
    return tasks


def _sparsities(given: float | dict[str, float] | None, tasks: list[str], config: TicketConfig,
                option: str) -> dict[str, float]:
    """Returns {task: sparsity} for the tasks, each a pruned round of the IMP schedule (default: the last)."""
    schedule = config.sparsities()[1:]
    if not schedule:
        raise SweepError("--target-sparsity 0 prunes nothing: give a target sparsity above 0 for IMP to reach")
    chosen = dict(given) if isinstance(given, dict) else {task: given for task in tasks}
    strangers = [task for task in chosen if task not in tasks]
    if strangers:
        raise SweepError(f"{option} names {strangers[0]}, which is not one of its tasks ({', '.join(tasks)})")
    result = {}
    for task in tasks:
        value = chosen.get(task)
        matches = [s for s in schedule if value is None or abs(s - value) < 1e-6]
        if not matches:
            have = ", ".join(f"{s:g}" for s in schedule)
            raise SweepError(f"{option} {value:g} is not a sparsity IMP reaches with these settings ({have}); "
                             f"pick one of those")
        result[task] = matches[-1]
    return result


# --- sweep.json ------------------------------------------------------------------------------------


def save_sweep(sweep: Sweep) -> None:
    """Writes sweep.json; a folder holding another definition is refused (the data folder and device may change)."""
    path = sweep.folder / DEFINITION
    if path.exists():
        stored = load_sweep(sweep.folder)
        changed = _differences(stored.to_dict(), sweep.to_dict())
        if changed:
            raise SweepError(f"{sweep.folder} holds another sweep ({', '.join(changed)} differ); use another "
                             f"--output, or the same settings to keep its jobs")
    files.write_text(path, json.dumps(sweep.to_dict(), indent=2) + "\n")


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Names of the entries that differ, 'config.learning_rate' for nested ones; placement settings do not count."""
    changed = []
    for key in dict.fromkeys([*old, *new]):
        if prefix == "config." and key in Experiment.PLACEMENT:
            continue
        if isinstance(old.get(key), dict) and isinstance(new.get(key), dict):
            changed += _differences(old[key], new[key], f"{prefix}{key}.")
        elif old.get(key) != new.get(key):
            changed.append(prefix + key)
    return changed


def load_sweep(output_dir: str | Path, **placement) -> Sweep:
    """Returns the sweep defined in output_dir/sweep.json, with `placement` overrides (data_dir, device)."""
    folder = Path(output_dir)
    path = folder / DEFINITION
    if not path.is_file():
        raise SweepError(f"{folder} holds no {DEFINITION}; define the sweep first: "
                         f"python -m minilth.sweep plan --output {folder} --tasks ...")
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("format") != FORMAT:
            raise ValueError("not a sweep definition")
        moved = {name: value for name, value in placement.items() if value is not None}
        config = from_dict(TicketConfig, {**stored["config"], **moved, "task": stored["tasks"][0]}, str(path))
        transfer_ = stored["transfer"]
        return Sweep(folder, config, stored["tasks"], stored["controls"], stored["control_sparsity"],
                     transfer_["sources"], transfer_["targets"], transfer_["sparsity"])
    except MinilthError:  # a setting this version does not know, or an impossible value: its own message
        raise
    except (OSError, UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        raise SweepError(f"{path} is damaged ({type(error).__name__}); delete it and run the same "
                         f"`python -m minilth.sweep plan` again: finished jobs are kept") from None


def check_imp_runs(sweep: Sweep) -> None:
    """Raises MinilthError when an IMP folder of the sweep holds a run with other settings than sweep.json's
    (a definition edited by hand, or folders copied from another sweep): its tables would mix two settings."""
    for task in sweep.tasks:
        check_same_config(sweep.imp_folder(task), sweep.config_for(task))


# --- shards ----------------------------------------------------------------------------------------


SHARD_HELP = ("I/N runs the I-th of N shares, counted from 1 (1/3, 2/3, 3/3); 'slurm' takes the share of this "
              "SLURM array task: a job array --array=0-9 (or 1-10) makes 10 shares, one per array task")


def parse_shard(text: str, environ=os.environ) -> tuple[int, int]:
    """Returns (i, n) from 'I/N' (1 <= I <= N), or from SLURM's array variables for 'slurm'."""
    if text.strip().lower() == "slurm":
        return _slurm_shard(environ)
    parts = text.split("/")
    try:
        index, count = (int(part) for part in parts)
    except ValueError:
        raise SweepError(f"--shard {text!r} is not I/N; {SHARD_HELP}") from None
    if count < 1:
        raise SweepError(f"--shard {text}: N, the number of shares, must be at least 1")
    if not 1 <= index <= count:
        hint = " (in a SLURM array, whose index starts at 0, pass --shard slurm)" if index == 0 else ""
        raise SweepError(f"--shard {text}: shares are counted from 1, so I must be 1 to {count}{hint}")
    return index, count


def _slurm_shard(environ) -> tuple[int, int]:
    """The array task's share: its place in the array (--array=0-9 and --array=1-10 both give 1/10 to 10/10)."""
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")
    try:
        task_id, first, count = (int(environ[name]) for name in names)
        step = int(environ.get("SLURM_ARRAY_TASK_STEP", "1"))
    except (KeyError, ValueError):
        raise SweepError(f"--shard slurm reads {', '.join(names)}, which are not all set: run it in an "
                         f"`sbatch --array` job, or give --shard I/N") from None
    place, off_step = divmod(task_id - first, max(step, 1))
    if off_step or not 0 <= place < count:
        raise SweepError(f"SLURM array task {task_id} is not one of {count} evenly spaced tasks from {first}; "
                         f"use a range such as --array=0-{count - 1}, or give --shard I/N")
    return place + 1, count


def shard(jobs: list[Job], index: int, count: int) -> list[Job]:
    """Returns the index-th (from 1) of `count` shares: jobs index, index+count, ...; IMP jobs first."""
    share = jobs[index - 1::count]
    return sorted(share, key=lambda job: job.kind != "imp")  # stable: the list's order otherwise


# --- running jobs ----------------------------------------------------------------------------------


class Runner:
    """Runs a sweep's jobs in this process, reading each task's data once for consecutive jobs of that task."""

    def __init__(self, sweep: Sweep, progress: bool = True, echo=print):
        self.sweep, self.progress, self.echo = sweep, progress, echo
        self._data: tuple[str, tuple] | None = None  # (task, (train, eval)): jobs come grouped by task

    def run(self, job: Job) -> None:
        """Runs one job whose inputs exist, resuming what an earlier attempt finished."""
        if job.kind == "imp":
            # The plan's estimate times a few training steps: printed with progress only.
            find_ticket(self.sweep.config_for(job.task), self.sweep.imp_folder(job.task), self.progress,
                        echo=self.echo if self.progress else None)
        elif job.kind == "control":
            self.run_control(job)
        else:
            self.run_transfer(job)

    def task_data(self, task: str) -> tuple:
        """Returns the task's (train, eval) datasets, as every job of the sweep reads them."""
        if self._data is None or self._data[0] != task:
            self._data = None  # free the previous task's data first
            with distributed.rank_0_first():  # under torchrun: a download happens once
                self._data = task, load_task_data(self.sweep.config_for(task), get_task(task), self.progress)
        return self._data[1]

    def run_control(self, job: Job) -> dict:
        """Returns the (control, seed) result at the task's sparsity, written into the sweep's controls folder."""
        sweep = self.sweep
        placement = {name: getattr(sweep.config, name) for name in Experiment.PLACEMENT}
        run = read_run(sweep.imp_folder(job.task), self.progress, with_data=False, **placement)
        run.data = self.task_data(job.task)
        imp = round_at(run, sweep.control_sparsity[job.task])
        return run_one_control(run, imp.mask, job.control, job.seed, sweep.controls_folder(job.task), self.progress)

    def run_transfer(self, job: Job) -> dict:
        """Returns one transfer cell: the source's IMP mask (none for dense) on theta_0 of the target, fine-tuned;
        written whole once done."""
        sweep, started, source = self.sweep, time.perf_counter(), {}
        mask = None
        if job.source != DENSE:
            index = sweep.round_index(sweep.transfer_sparsity[job.source])
            path = round_dir(sweep.imp_folder(job.source), index) / "mask.pt"
            mask = Mask.load(path)
            source = {"mask": str(path.relative_to(sweep.folder)), "sparsity": mask.sparsity,
                      "fingerprint": fingerprint(mask)}
        metrics = transfer(mask, job.task, sweep.config_for(job.task), job.seed, self.task_data(job.task),
                           self.progress)
        label = DENSE if job.source == DENSE else sweep.source_label(job.source)
        cell = {"source": label, "target": job.task, "seed": job.seed, **source, "metrics": metrics,
                "seconds": round(time.perf_counter() - started, 1)}
        files.write_text(sweep.output(job), json.dumps(cell, indent=2) + "\n")
        return cell


def run_shard(sweep: Sweep, index: int = 1, count: int = 1, progress: bool = True, echo=print) -> Counter:
    """Runs the index-th of `count` shares of the sweep's jobs; returns how many ran, were done, or wait.

    IMP jobs first; then each job whose inputs exist. A job whose IMP round is not finished is
    skipped with a line naming the job it waits for: run the shard again once that is done.
    """
    check_imp_runs(sweep)
    share = shard(sweep.jobs(), index, count)
    runner, counts = Runner(sweep, progress, echo), Counter()
    echo(f"shard {index}/{count} of {sweep.folder}: {len(share)} of {len(sweep.jobs())} jobs")
    for number, job in enumerate(share, 1):
        # Under torchrun every rank must take the same turn, also when another shard finishes a round meanwhile.
        state = distributed.on_rank_0(sweep.state, job)
        if state != "ready":
            counts[state] += 1
            if state == "waiting":
                echo(f"[{number}/{len(share)}] skip {job.name}: {sweep.describe(job)}")
            continue
        echo(f"[{number}/{len(share)}] start {job.name}")
        started = time.perf_counter()
        runner.run(job)
        counts["ran"] += 1
        echo(f"[{number}/{len(share)}] finished {job.name} in {time.perf_counter() - started:.0f} s")
    waiting = "; run this shard again once the jobs they wait for are done" if counts["waiting"] else ""
    echo(f"shard {index}/{count}: {counts['ran']} ran, {counts['done']} done already, "
         f"{counts['waiting']} waiting{waiting}")
    return counts


# --- merging what is finished --------------------------------------------------------------------


def table2_rows(sweep: Sweep, task: str) -> list[dict]:
    """Returns Table 2 of the task from its finished jobs (dense, IMP, each control's finished seeds); [] before
    the IMP job's dense round is done."""
    if not sweep.round_done(task, 0).exists():
        return []
    run = read_run(sweep.imp_folder(task), with_data=False)
    sparsity = sweep.control_sparsity[task]
    imp = next((r for r in run.rounds if r.index == sweep.round_index(sparsity)), None)
    if imp is None:  # no control can be finished either: they start from that round
        return table2({"dense": run.rounds[0].metrics}, task, sparsity)
    finished = {}
    for control in sweep.controls:
        paths = [result_path(sweep.controls_folder(task), control, seed) for seed in sweep.config.seeds]
        finished[control] = [json.loads(path.read_text()) for path in paths if path.exists()]
    return table2(table2_results(run, imp, finished), task, sparsity)


def transfer_record(sweep: Sweep) -> dict:
    """Returns the finished transfer cells as transfer.summarize_matrix reads them: tasks, labels and runs."""
    runs = {}
    for job in sweep.jobs():
        if job.kind == "transfer" and sweep.output(job).exists():
            runs[job.name] = json.loads(sweep.output(job).read_text())
    return {"tasks": sweep.transfer_targets, "labels": [sweep.source_label(s) for s in sweep.transfer_sources],
            "runs": runs}


def merge(sweep: Sweep, write: bool = True) -> str:
    """Returns Table 2 of each task and the transfer matrix, from whatever jobs are finished, and the jobs still
    missing; with `write`, the tables go to each task's controls folder (table2.csv, table2.md) and to
    <sweep>/transfer (transfer.csv, transfer_heatmap.png/.csv)."""
    check_imp_runs(sweep)
    parts = []
    for task in sweep.tasks:
        rows = table2_rows(sweep, task)
        if not rows:
            continue
        folder = sweep.controls_folder(task)
        text = write_table2(rows, get_task(task), folder) if write else format_table2(rows, task)
        parts.append(f"Table 2, {get_task(task).display_name} ({folder}):\n{text}")
    if sweep.transfer_targets:
        record = transfer_record(sweep)
        folder = sweep.folder / "transfer"
        text = write_outputs(record, folder) if write else format_matrix(summarize_matrix(record))
        parts.append(f"transfer, each cell the target's metric (its difference to dense) ({folder}):\n{text}")
    parts.append(format_missing(sweep))
    return "\n\n".join(parts)


def format_missing(sweep: Sweep) -> str:
    """Returns a line counting the unfinished jobs, then one line for each, saying what it waits for."""
    jobs = sweep.jobs()
    missing = [job for job in jobs if sweep.state(job) != "done"]
    if not missing:
        return f"all {len(jobs)} jobs are done"
    lines = [f"{len(missing)} of {len(jobs)} jobs still missing:"]
    return "\n".join(lines + [f"  {job.name}: {sweep.describe(job)}" for job in missing])


def format_jobs(sweep: Sweep, with_state: bool = False) -> str:
    """Returns the job list as a table (number, job, output; with its state), then the counts of each kind."""
    jobs = sweep.jobs()
    header = ["#", "job", "output"] + (["state"] if with_state else [])
    rows = [[str(number), job.name, str(sweep.where(job).relative_to(sweep.folder))]
            + ([sweep.describe(job)] if with_state else []) for number, job in enumerate(jobs, 1)]
    kinds = Counter(job.kind for job in jobs)
    counts = ", ".join(f"{kinds[kind]} {kind}" for kind in ("imp", "control", "transfer") if kinds[kind])
    summary = f"{len(jobs)} jobs ({counts}) with seeds {sweep.config.seeds}, in {sweep.folder}"
    if with_state:
        states = Counter(sweep.state(job) for job in jobs)
        summary += ": " + ", ".join(f"{states[s]} {s}" for s in ("done", "ready", "waiting"))
    return "\n".join([render_table([header] + rows), describe_grid(sweep), summary])


def describe_grid(sweep: Sweep) -> str:
    """Returns the sparsities the sweep works at: IMP's rounds, each task's Table 2, the transfer sources."""
    at = lambda sparsities: ", ".join(f"{task} {100 * s:g}%" for task, s in sparsities.items())  # noqa: E731
    text = (f"IMP rounds at {', '.join(f'{100 * s:g}%' for s in sweep.config.sparsities())}; "
            f"Table 2{' and controls' if sweep.controls else ''} at {at(sweep.control_sparsity)}")
    if sweep.transfer_targets:
        sources = ", ".join(sweep.source_label(source) for source in sweep.transfer_sources)
        text += f"; transfer from {sources} (and dense) to {', '.join(sweep.transfer_targets)}"
    return text


# --- command line ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minilth.sweep",
        description="The paper's grid as a list of jobs that shards share: `plan` writes the definition "
                    "(sweep.json), `run --shard I/N` runs one share (IMP jobs first, then the jobs whose IMP "
                    "rounds are finished), `merge` writes Table 2 of each task and the transfer matrix from the "
                    "finished jobs, `status` lists every job's state. Every job resumes: rerun a shard at will.",
        epilog="example: python -m minilth.sweep plan --output runs/grid --tasks rte mrpc --transfer "
               "--model all-MiniLM-L6-v2 --target-sparsity 0.5 --seeds 0 1 2; then "
               "python -m minilth.sweep run --output runs/grid --shard 1/2 (and 2/2)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{plan,run,merge,status}")

    plan = commands.add_parser("plan", help="define the sweep (sweep.json) and list its jobs")
    grid = plan.add_argument_group("the grid")
    grid.add_argument("--tasks", nargs="+", required=True, help=f"one IMP job per task, any of: {', '.join(TASKS)}")
    grid.add_argument("--controls", nargs="*", default=list(DEFAULT_CONTROLS), metavar="CONTROL",
                      help=f"at each task's sparsity, any of: {', '.join(CONTROLS)}; none: no controls "
                           f"(default: {' '.join(DEFAULT_CONTROLS)})")
    grid.add_argument("--control-sparsity", nargs="+", default=None, metavar="S|TASK=S",
                      help="the IMP round the controls are compared with: one sparsity for all tasks, or TASK=S "
                           "pairs (default: each task's last round)")
    grid.add_argument("--transfer", nargs="*", default=None, metavar="TARGET",
                      help="transfer each source's IMP mask to these tasks (alone: to every task of the sweep), "
                           "with each target's dense baseline")
    grid.add_argument("--transfer-sources", nargs="+", default=None, metavar="TASK",
                      help="the tasks whose masks move (default: every task of the sweep)")
    grid.add_argument("--transfer-sparsity", nargs="+", default=None, metavar="S|TASK=S",
                      help="the IMP round whose mask moves: one sparsity, or SOURCE=S pairs (default: the last)")
    add_arguments(plan, TicketConfig, order=(Experiment, TicketConfig, FinetuneSettings), exclude=("task",))
    _add_output(plan)

    run = commands.add_parser("run", help="run one share of the jobs; rerun it to resume or to do waiting jobs")
    run.add_argument("--shard", default="1/1", help=f"{SHARD_HELP} (default: 1/1, every job)")
    add_arguments(run, TicketConfig, only=Experiment.PLACEMENT, optional=True)  # each machine's data folder, device
    add_command_options(run, output="runs/sweep")

    for name, text in (("merge", "write Table 2 of each task and the transfer matrix from the finished jobs"),
                       ("status", "list every job and its state; writes nothing")):
        _add_output(commands.add_parser(name, help=text))
    return parser


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default=None, help="the sweep's folder (default: runs/sweep)")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    return run_cli(lambda: COMMANDS[args.command](args), "run the same command again: finished jobs are kept")


def plan_command(args) -> int:
    """Defines the sweep, writes sweep.json and prints the job list; returns 0."""
    tasks = _task_names(args.tasks, "--tasks")
    config = from_arguments(TicketConfig, args, task=tasks[0])
    targets = args.transfer if args.transfer else (tasks if args.transfer is not None else [])
    sweep = define(args.output or "runs/sweep", config, tasks, args.controls,
                   _parse_sparsity(args.control_sparsity, "--control-sparsity"), targets, args.transfer_sources,
                   _parse_sparsity(args.transfer_sparsity, "--transfer-sparsity"))
    save_sweep(sweep)
    print(format_jobs(sweep))
    print(f"definition in {sweep.folder / DEFINITION}; run it with: python -m minilth.sweep run "
          f"--output {sweep.folder} --shard I/N")
    return 0


def _parse_sparsity(values: list[str] | None, option: str) -> float | dict[str, float] | None:
    """None, one sparsity ('0.5'), or {task: sparsity} from 'TASK=S' pairs."""
    if not values:
        return None
    try:
        if len(values) == 1 and "=" not in values[0]:
            return float(values[0])
        pairs = [value.split("=") for value in values]
        return {get_task(task).name: float(sparsity) for task, sparsity in pairs}
    except ValueError:
        raise SweepError(f"{option} takes one sparsity (0.5) or TASK=S pairs (rte=0.6 mrpc=0.5), "
                         f"got {' '.join(values)}") from None


def run_command(args) -> int:
    """Runs the share of the jobs --shard names; returns 0, also when some jobs wait for other shards."""
    index, count = parse_shard(args.shard)
    placement = {name: getattr(args, name) for name in Experiment.PLACEMENT if hasattr(args, name)}
    sweep = load_sweep(args.output or "runs/sweep", **placement)
    distributed.start(sweep.config.device)  # under torchrun: the ranks run every job of the share together
    run_shard(sweep, index, count, progress=not args.quiet)
    return 0


def merge_command(args) -> int:
    """Writes and prints the tables of the finished jobs and names the missing ones; returns 0."""
    print(merge(load_sweep(args.output or "runs/sweep")))
    return 0


def status_command(args) -> int:
    """Prints every job with its state; returns 0."""
    print(format_jobs(load_sweep(args.output or "runs/sweep"), with_state=True))
    return 0


COMMANDS = {"plan": plan_command, "run": run_command, "merge": merge_command, "status": status_command}


if __name__ == "__main__":
    sys.exit(main())
