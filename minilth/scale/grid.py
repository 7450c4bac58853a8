"""Sweeps: the paper's grid (tasks x seeds, the controls, the transfer matrix) as one explicit list of jobs
that n shells, or the tasks of a SLURM array, share between them.

    python -m minilth.sweep plan --output runs/grid --tasks stsb mrpc rte --controls random_pruning random_reinit \\
        --transfer --model all-MiniLM-L6-v2 --target-sparsity 0.5 --seeds 0 1 2
    python -m minilth.sweep run --output runs/grid --shard 1/3     # and 2/3, 3/3: anywhere, in any order
    python -m minilth.sweep merge --output runs/grid                # Table 2 of each task, the transfer matrix

`plan` writes the definition, sweep.json, that every shard reads: the settings every fine-tuning
shares (a TicketConfig without its task), the tasks, the controls, the IMP round each task is
compared and transferred at (--sparsity), the transfer cells. The jobs follow from it, always in
this order, each with its own output:

    imp <task>                            find_ticket, all the seeds
                                          -> imp/<task>/
    control <task> <control> seed <k>     a control at the task's sparsity
                                          -> controls/<task>/sparsity_S/<control>/seed_k.json
    transfer <source>-><target> seed <k>  the source's IMP mask, fine-tuned
                                          -> transfer/<source>_to_<target>/seed_k.json
    transfer dense-><target> seed <k>     the target's dense baseline
                                          -> transfer/dense_to_<target>/seed_k.json

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

import dataclasses
import json
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .. import files
from ..checkpoints import resolve_checkpoint
from ..checkpoints.masks import mask_digest
from ..config import Experiment, TicketConfig
from ..data import TASKS, get_task
from ..errors import MinilthError
from ..lottery.baselines import (CONTROLS, ControlSettings, check_result, controls_folder, result_path,
                                 run_one_control, stored_result, table2_results, write_table2)
from ..lottery.mask_transfer import DENSE, check_run_metrics, format_matrix, summarize_matrix, transfer, write_outputs
from ..lottery.report import format_table2, render_table, table2
from ..lottery.run_folder import (RoundChoice, TicketRun, check_same_config, fingerprint, load_task_data, read_run,
                                  round_at, round_dir)
from ..lottery.task_settings import TASK_SETTINGS_HELP, for_task, parse_task_settings
from ..lottery.verdict import table2_verdict
from ..schemas import SWEEP, TRANSFER_RUN, FileError, not_a_folder, read_json
from ..settings import check, flag, setting, value_type
from ..train import FinetuneSettings
from ..ticket import find_ticket
from . import distributed

DEFINITION = "sweep.json"
FORMAT = "minilth sweep v2"
DEFAULT_FOLDER = "runs/sweep"


class SweepError(MinilthError, ValueError):
    """A sweep that cannot be planned, read or split as asked."""


@dataclass(kw_only=True)
class SweepSettings:
    """the grid"""

    tasks: list[str] = setting(help=f"one IMP job per task, any of: {', '.join(TASKS)}")
    transfer: list[str] | None = setting(None, "transfer each source's IMP mask to these tasks (the flag alone: to "
                                               "every task of the sweep), with each target's dense baseline",
                                         nargs="*")
    transfer_sources: list[str] | None = setting(None, "the tasks whose masks move (default: every task of the "
                                                       "sweep)")
    task_settings: list[str] | None = setting(None, TASK_SETTINGS_HELP + "; they hold for every job that fine-tunes on "
                                                                         "the task (IMP, controls, transfer to it)")


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
    sparsity: dict[str, float]  # task -> the IMP round its Table 2 and controls compare, and whose mask moves
    transfer_sources: list[str]  # tasks of the sweep whose IMP masks move
    transfer_targets: list[str]
    task_settings: dict[str, dict] = dataclasses.field(default_factory=dict)  # task -> {setting: value}

    def config_for(self, task: str) -> TicketConfig:
        """Returns the shared settings with the task set, and the task's own settings: what its jobs fine-tune with."""
        return for_task(self.config, task, self.task_settings)

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
        return controls_folder(self.folder / "controls" / task, self.sparsity[task])

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

    def finished(self, job: Job) -> bool:
        """Returns True when the job's output is whole and the sweep's: an IMP run whose every round reads back as
        find_ticket checks it, a result read through its schema and made by the sweep's settings and checkpoint.
        A damaged one, or another's, is not finished: the job runs again."""
        try:
            if job.kind == "imp":
                return read_run(self.imp_folder(job.task), with_data=False).finished
            if job.kind == "control":
                return self.output(job).exists() and bool(check_result(self.output(job), self.settings_of(job.task)))
            return self.output(job).exists() and bool(read_cell(self.output(job)))
        except MinilthError:
            return False

    def settings_of(self, task: str) -> TicketRun:
        """Returns the task's IMP run as its jobs are made: its settings and fingerprint (no round is read)."""
        config = self.config_for(task)
        checkpoint = resolve_checkpoint(config.model)
        return TicketRun(config, get_task(task), checkpoint, self.imp_folder(task), (), [], mask=None,
                         fingerprint=fingerprint(config, checkpoint))

    # -- what each job needs --

    def needs(self, job: Job) -> tuple[Job, int] | None:
        """Returns (the IMP job, the round index) whose finished round the job reads, or None when it reads none."""
        if job.kind == "control":
            return Job("imp", job.task), self.round_index(self.sparsity[job.task])
        if job.kind == "transfer" and job.source != DENSE:
            return Job("imp", job.source), self.round_index(self.sparsity[job.source])
        return None

    def round_index(self, sparsity: float) -> int:
        """Returns the index of the IMP round at `sparsity` in the schedule (checked when the sweep is planned)."""
        return next(i for i, s in enumerate(self.config.sparsities()) if abs(s - sparsity) < 1e-6)

    def state(self, job: Job) -> str:
        """Returns "done", "ready" (its inputs exist) or "waiting" (for an IMP round still to finish)."""
        if self.finished(job):
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
            done = next((i for i in range(rounds) if not self.round_done(job.task, i).exists()), rounds)
            try:
                read_run(self.imp_folder(job.task), with_data=False)
            except MinilthError as error:  # a finished round that is not whole: the job trains it again
                return f"ready: {error}" if done else "ready"
            return f"{done} of {rounds} rounds done" if done else "ready"
        return state

    def source_label(self, source: str) -> str:
        """Returns a transfer source's row name, e.g. 'rte@50%' (the transfer CLI's names)."""
        return f"{source}@{100 * self.sparsity[source]:.0f}%"

    # -- sweep.json --

    def to_dict(self) -> dict:
        config = {k: v for k, v in self.config.to_dict().items() if k != "task"}
        return {"format": FORMAT, "tasks": self.tasks, "config": config, "controls": self.controls,
                "sparsity": self.sparsity, "task_settings": self.task_settings,
                "transfer": {"sources": self.transfer_sources, "targets": self.transfer_targets}}


def define(output_dir: str | Path, config: TicketConfig, tasks: list[str], controls: list[str] = (),
           sparsity=None, transfer_targets: list[str] = (), transfer_sources: list[str] | None = None,
           task_settings: dict[str, dict] | list[str] | None = None) -> Sweep:
    """Returns a checked sweep (nothing written): IMP on each task with `config`'s settings (its task is ignored),
    the controls at each task's round, and each source's mask transferred to each target.

    `sparsity` picks each task's IMP round for its Table 2, controls and transferred mask: None
    (the last round), one value for all, {task: value}, or a RoundChoice. Transfer sources default
    to every task of the sweep; no targets, no transfer. `task_settings` ({task: {name: value}}, or
    the flag's TASK:NAME=VALUE strings) gives a task fine-tuning settings of its own.
    """
    tasks = _task_names(tasks, "--tasks")
    check(bool(tasks), f"give at least one task with {flag('tasks')}")
    ControlSettings(controls=list(controls))  # an unknown control fails here
    targets = _task_names(transfer_targets, "--transfer")
    sources = _task_names(tasks if transfer_sources is None else transfer_sources, "--transfer-sources")
    check(transfer_sources is None or bool(targets), f"{flag('transfer_sources')} needs {flag('transfer')} (the "
                                                     f"target tasks; alone: every task of the sweep)")
    strangers = [source for source in sources if source not in tasks]
    check(not strangers, f"transfer source {strangers[0] if strangers else ''} is not one of {flag('tasks')} "
                         f"({', '.join(tasks)}); its IMP job makes the mask, so add it to {flag('tasks')}")
    config = dataclasses.replace(config, task=tasks[0])
    choice = sparsity if isinstance(sparsity, RoundChoice) else RoundChoice(sparsity=sparsity)
    sweep = Sweep(Path(output_dir), config, tasks, list(controls), _sparsities(choice, tasks, config),
                  sources if targets else [], targets, parse_task_settings(task_settings, [*tasks, *targets]))
    for task in sweep.task_settings:
        sweep.config_for(task)  # a value out of range fails here
    return sweep


def _task_names(names, option: str) -> list[str]:
    """Task names as the task table spells them, each once, in the order given."""
    tasks = [get_task(name).name for name in names]
    check(len(set(tasks)) == len(tasks), f"{option} names a task twice: {' '.join(names)}")
    return tasks


def _sparsities(choice: RoundChoice, tasks: list[str], config: TicketConfig) -> dict[str, float]:
    """Returns {task: sparsity} for the tasks, each a pruned round of the IMP schedule (default: the last)."""
    schedule = config.sparsities()[1:]
    check(bool(schedule), "--target-sparsity 0 prunes nothing: give a target sparsity above 0 for IMP to reach")
    strangers = [task for task in choice.sparsity if task != "*" and task not in tasks]
    check(not strangers, f"{flag('sparsity')} names {strangers[0] if strangers else ''}, which is not one of the "
                         f"sweep's tasks ({', '.join(tasks)})")
    result = {}
    for task in tasks:
        value = choice.at(task)
        matches = [s for s in schedule if value is None or abs(s - value) < 1e-6]
        if not matches:
            raise SweepError(f"{flag('sparsity')} {value:g} is not a sparsity IMP reaches with these settings "
                             f"({', '.join(f'{s:g}' for s in schedule)}); pick one of those")
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
    """Returns the sweep defined in output_dir/sweep.json, with `placement` overrides (data_dir, device); anything
    wrong in the file is one line that names it."""
    folder = Path(output_dir)
    path = not_a_folder(folder / DEFINITION)
    if not path.is_file():
        raise SweepError(f"{folder} holds no {DEFINITION}; define the sweep first: "
                         f"python -m minilth.sweep plan --output {folder} --tasks ...")
    fix = f"correct it, or delete it and run the same `python -m minilth.sweep plan` again: finished jobs are kept"
    try:
        stored = read_json(path, SWEEP)
    except FileError as error:
        raise SweepError(f"{error}; {fix}") from None
    try:
        if stored["format"] != FORMAT:
            raise ValueError(f"not a sweep definition of this minilth (format '{FORMAT}')")
        moved = {name: value for name, value in placement.items() if value is not None}
        config = TicketConfig.from_dict({**stored["config"], **moved, "task": stored["tasks"][0]}, str(path))
        transfer_ = stored["transfer"]
        sweep = define(folder, config, stored["tasks"], stored["controls"], stored["sparsity"],
                       transfer_["targets"], transfer_["sources"] if transfer_["targets"] else None,
                       stored.get("task_settings"))  # absent from definitions written before tasks had settings
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:  # a MinilthError is a ValueError
        message = str(error) if isinstance(error, MinilthError) else f"{type(error).__name__} {error}"
        # sweep.json holds keys, not flags
        message = re.sub(r"--([a-z][a-z-]*)", lambda match: match.group(1).replace("-", "_"), message)
        raise SweepError(f"{path} is not a valid sweep definition ({message.removeprefix(str(path) + ': ')}); "
                         f"{fix}") from None
    if sweep.sparsity != stored["sparsity"]:
        raise SweepError(f"{path} holds sparsities that are not IMP rounds of its settings; {fix}")
    return sweep


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
                config = self.sweep.config_for(task)
                self._data = task, load_task_data(config, get_task(task), resolve_checkpoint(config.model),
                                                  self.progress)
        return self._data[1]

    def run_control(self, job: Job) -> dict:
        """Returns the (control, seed) result at the task's sparsity, written into the sweep's controls folder."""
        sweep = self.sweep
        placement = {name: getattr(sweep.config, name) for name in Experiment.PLACEMENT}
        run = read_run(sweep.imp_folder(job.task), self.progress, with_data=False, **placement)
        run.data = self.task_data(job.task)
        imp = round_at(run, sweep.sparsity[job.task])
        return run_one_control(run, imp.mask, job.control, job.seed, sweep.controls_folder(job.task), self.progress)

    def run_transfer(self, job: Job) -> dict:
        """Returns one transfer cell: the source's IMP mask (none for dense) on theta_0 of the target, fine-tuned;
        written whole once done."""
        sweep, started, source = self.sweep, time.perf_counter(), {}
        mask = None
        if job.source != DENSE:  # the source's round, read and checked as every command reads it
            imp = round_at(read_run(sweep.imp_folder(job.source), with_data=False), sweep.sparsity[job.source])
            mask, path = imp.mask, round_dir(sweep.imp_folder(job.source), imp.index) / "mask.pt"
            source = {"mask": str(path.relative_to(sweep.folder)), "sparsity": mask.sparsity,
                      "fingerprint": mask_digest(mask)}
        metrics = transfer(mask, get_task(job.task), sweep.config_for(job.task), job.seed, self.task_data(job.task),
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


def table2_results_of(sweep: Sweep, task: str) -> dict[str, list[dict]]:
    """Returns the task's finished results, {setting: [metrics per seed]} (dense, IMP, each control's finished seeds);
    {} before the IMP job's dense round is done, or while one of its rounds does not read back whole."""
    try:
        run = read_run(sweep.imp_folder(task), with_data=False)
    except MinilthError:  # not started, or a round to train again: the missing jobs' list says which
        return {}
    if not run.rounds:  # started, its dense round still training
        return {}
    imp = next((r for r in run.rounds if r.index == sweep.round_index(sweep.sparsity[task])), None)
    if imp is None:  # no control can be finished either: they start from that round
        return {"dense": run.rounds[0].metrics}
    finished = {}
    for control in sweep.controls:
        paths = [result_path(sweep.controls_folder(task), control, seed) for seed in sweep.config.seeds]
        results = (stored_result(path, run, imp.mask) for path in paths)
        finished[control] = [result for result in results if result is not None]
    return table2_results(run, imp, finished)


def transfer_record(sweep: Sweep) -> dict:
    """Returns the finished transfer cells as transfer.summarize_matrix reads them: tasks, labels and runs."""
    runs = {}
    for job in sweep.jobs():
        if job.kind == "transfer" and sweep.finished(job):
            runs[job.name] = read_cell(sweep.output(job))
    return {"tasks": sweep.transfer_targets, "labels": [sweep.source_label(s) for s in sweep.transfer_sources],
            "runs": runs}


def read_cell(path: Path) -> dict:
    """Returns a transfer cell read through its schema, with its target task's metrics; FileError otherwise."""
    cell = read_json(path, TRANSFER_RUN)
    check_run_metrics(cell, path)
    return cell


def merge(sweep: Sweep, write: bool = True) -> str:
    """Returns Table 2 of each task and the transfer matrix, from whatever jobs are finished, and the jobs still
    missing; with `write`, the tables go to each task's controls folder (table2.csv, table2.md) and to
    <sweep>/transfer (transfer.csv, transfer_heatmap.png/.csv)."""
    check_imp_runs(sweep)
    parts = []
    for task in sweep.tasks:
        results = table2_results_of(sweep, task)
        if not results:
            continue
        rows, folder = table2(results, task, sweep.sparsity[task]), sweep.controls_folder(task)
        text = write_table2(rows, get_task(task), folder) if write else format_table2(rows, task)
        if "imp" in results:
            text += "\n" + "\n".join(table2_verdict(results, get_task(task), sweep.sparsity[task]))
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
            f"Table 2{' and controls' if sweep.controls else ''} at {at(sweep.sparsity)}")
    if sweep.transfer_targets:
        sources = ", ".join(sweep.source_label(source) for source in sweep.transfer_sources)
        text += f"; transfer from {sources} (and dense) to {', '.join(sweep.transfer_targets)}"
    for task, values in sweep.task_settings.items():
        text += f"; {task} with " + ", ".join(f"{name} {value}" for name, value in values.items())
    return text
