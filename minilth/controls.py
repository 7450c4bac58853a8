"""The controls that say whether an IMP subnetwork is a winning ticket, each at the IMP mask's sparsity.

    imp_mask = Mask.load("runs/rte/rounds/round_05/mask.pt")      # 50% sparse
    random_pruning_mask(model, imp_mask, seed=0)                 # random pruning, same sparsity
    reinitialize(model, imp_mask.names(), how="shuffle", seed=0)  # random re-init, then the IMP mask
    standard_pruning(run, imp_mask, seed=0)                      # prune and keep training, no rewinding
    oneshot_mask(model, imp_mask)                                # magnitude pruning of theta_0 itself

A structured run's controls (`--structure`: whole heads and neurons) are structured too: random
pruning removes as many heads and as many neurons as its IMP mask, at random; one-shot and
standard pruning rank units as the run does; random re-initialisation is unchanged.

Every control is fine-tuned exactly as an IMP round is (`ticket.train_subnetwork`: the run's
settings, the head drawn from the seed, from the round's starting weights theta_0 or theta_i).
`run_controls` does all of them for an IMP output folder, writing each (control, seed) result as
soon as it is done, so a rerun resumes:

    python -m minilth.controls --run runs/rte --at-sparsity 0.5 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

from . import distributed, files
from .errors import MinilthError, run_cli
from .prune import Mask, named_tensors, oneshot_prune, random_prune, rewind, snapshot, sparsity_schedule
from .report import format_table2, table2, write_csv
from .settings import add_arguments, add_command_options
from .structured import random_structured_mask
from .tasks import Task
from .ticket import (Experiment, Round, TicketConfig, TicketRun, fresh_model, load_task_data, prune, pruned_counts,
                     read_run, rewind_point, train_subnetwork, write_summary)

CONTROLS = {
    "random_pruning": "random mask of the same global sparsity over the same prunable set",
    "random_pruning_layerwise": "random mask with each matrix as sparse as in the IMP mask",
    "random_reinit": "the IMP mask over the pre-trained matrices with their entries shuffled (reference code)",
    "random_reinit_fresh": "the IMP mask over matrices drawn afresh from BERT's initialisation",
    "standard_pruning": "prune the fine-tuned weights and keep training them, no rewinding (IMP's schedule)",
    "oneshot": "one-shot magnitude pruning of the pre-trained weights theta_0, no training first",
}
DEFAULT_CONTROLS = ("random_pruning", "random_reinit", "standard_pruning", "oneshot")


class ControlError(MinilthError, ValueError):
    """An unknown control, or an IMP folder without the round asked for."""


# --- the masks and weights of each control ---------------------------------------------------------


def random_pruning_mask(model, imp_mask: Mask, seed: int, layerwise: bool = False, structured: bool = False) -> Mask:
    """Returns a random mask over the same tensors as the IMP mask, as many weights pruned (layerwise: per tensor);
    `structured`: as many whole heads and as many neurons (layerwise: per layer)."""
    if structured:
        return random_structured_mask(imp_mask, model.config.num_attention_heads, seed, layerwise)
    dense = Mask.dense(model, imp_mask.names())
    if layerwise:
        return random_prune(model, dense, layerwise_like=imp_mask, seed=seed)
    # num_pruned / num_total rounds back to exactly num_pruned in random_prune's count.
    return random_prune(model, dense, imp_mask.num_pruned / imp_mask.num_total, seed=seed)


def oneshot_mask(theta0, imp_mask: Mask) -> Mask:
    """Returns the magnitude-pruning mask of theta_0 itself at the IMP mask's sparsity, over the same tensors."""
    return oneshot_prune(theta0, imp_mask.num_pruned / imp_mask.num_total, names=imp_mask.names())


def reinitialize(model: nn.Module, names: list[str], how: str = "shuffle", seed: int = 0) -> list[str]:
    """Returns the names re-initialised in place: entries permuted ("shuffle") or drawn afresh ("fresh").

    "shuffle" is what the reference code does: each pre-trained matrix keeps its values (and so
    its distribution) in a random order. "fresh" draws BERT's initialisation, normal with std
    `config.initializer_range`. Only the named tensors change; biases, LayerNorms, embeddings
    and heads keep their pre-trained (or seeded) values.
    """
    if how not in ("shuffle", "fresh"):
        raise ControlError(f"unknown re-initialisation '{how}'; use 'shuffle' or 'fresh'")
    tensors = named_tensors(model)
    unknown = [name for name in names if name not in tensors]
    if unknown:
        raise ControlError(f"the model has no tensor named {', '.join(unknown[:3])}; pass names of its weights")
    std = getattr(getattr(model, "config", None), "initializer_range", 0.02)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in names:
            weight = tensors[name]
            if how == "shuffle":
                order = torch.randperm(weight.numel(), generator=generator)  # (numel,)
                new = weight.detach().flatten().cpu()[order].reshape(weight.shape)
            else:
                new = torch.randn(weight.shape, generator=generator) * std
            weight.copy_(new)
    return list(names)


# --- fine-tuning each control ----------------------------------------------------------------------


def finetune_control(run: TicketRun, model, mask: Mask, seed: int, progress: bool = True) -> dict:
    """Returns the final metrics of a control's subnetwork, trained exactly as an IMP round trains: the mask over
    the round's starting weights (theta_0 or theta_i, which `model` already holds), then fine-tuned."""
    mask.apply_to(model)
    return train_subnetwork(run, model, mask, seed, progress=progress).final


def starting_model(run: TicketRun, seed: int):
    """Returns the model an IMP round starts from, before masking: theta_0 (or theta_i), the head from the seed."""
    model = fresh_model(run.config, run.task, seed)
    rewind(model, rewind_point(run, seed, model))
    return model


def run_random_pruning(run: TicketRun, imp_mask: Mask, seed: int, layerwise: bool = False,
                       progress: bool = True) -> tuple[Mask, dict]:
    """Returns (mask, metrics) of a random mask at the IMP mask's sparsity, fine-tuned like an IMP round."""
    model = starting_model(run, seed)
    mask = random_pruning_mask(model, imp_mask, seed, layerwise, run.config.structured)
    return mask, finetune_control(run, model, mask, seed, progress)


def run_random_reinit(run: TicketRun, imp_mask: Mask, seed: int, how: str = "shuffle",
                      progress: bool = True) -> tuple[Mask, dict]:
    """Returns (mask, metrics) of the IMP mask over re-initialised prunable matrices, fine-tuned."""
    model = starting_model(run, seed)
    reinitialize(model, imp_mask.names(), how, seed)
    return imp_mask, finetune_control(run, model, imp_mask, seed, progress)


def run_oneshot(run: TicketRun, imp_mask: Mask, seed: int, progress: bool = True) -> tuple[Mask, dict]:
    """Returns (mask, metrics) of pruning the starting weights once, as the run prunes (by magnitude, or its heads
    and neurons), as much as the IMP mask prunes, fine-tuned."""
    model = starting_model(run, seed)
    target = {kind: pruned for kind, (pruned, _) in pruned_counts(run, model, imp_mask).items()}
    mask = prune(run, model, Mask.dense(model, imp_mask.names()), target)
    return mask, finetune_control(run, model, mask, seed, progress)


def standard_pruning(run: TicketRun, imp_mask: Mask, seed: int, progress: bool = True,
                     checkpoint: Path | None = None) -> tuple[Mask, dict, list[dict]]:
    """Returns (mask, final metrics, per-round records) of pruning without rewinding, on IMP's schedule.

    Round 0 fine-tunes the dense model; each later round prunes the previous round's trained
    weights (globally, by magnitude; or its heads and neurons, as the run prunes) and keeps training
    them from there. The last round reaches exactly the IMP mask's number of pruned weights (units).
    With `checkpoint`, the weights and mask after each round are saved there, and an interrupted
    run continues from the last finished round.
    """
    model = fresh_model(run.config, run.task, seed)
    counts = pruned_counts(run, model, imp_mask)  # {kind: (pruned, total)}
    target = {kind: pruned for kind, (pruned, _) in counts.items()}
    # The schedule's levels below the target, then the target itself: the last level can be off
    # by a fraction of a weight (unit) from the schedule's value, and must not count as an extra round.
    below = [s for s in sparsity_schedule(max(p / t for p, t in counts.values()), run.config.rate, run.config.schedule)
             if {kind: round(s * total) for kind, (_, total) in counts.items()} != target]
    levels = [0.0] + below + [target]
    mask, state, records = Mask.dense(model, imp_mask.names()), snapshot(model), []
    if checkpoint is not None and checkpoint.exists():
        saved = torch.load(checkpoint, weights_only=True)
        mask, state, records = Mask(saved["flags"]), saved["state"], json.loads(saved["records"])
    for index in range(len(records), len(levels)):
        # The whole previous state (encoder and head) is the starting point: that is "no rewinding".
        model = fresh_model(run.config, run.task, seed)
        rewind(model, state)
        if index > 0:
            mask = prune(run, model, mask, levels[index])
        mask.apply_to(model)
        history = train_subnetwork(run, model, mask, seed, rewound=False, progress=progress)
        state = snapshot(model)
        records.append({"round": index, "sparsity": mask.sparsity, "metrics": history.final})
        if checkpoint is not None:
            files.save({"flags": mask.flags, "state": state, "records": json.dumps(records)}, checkpoint)
    return mask, records[-1]["metrics"], records


# --- the IMP run the controls are compared with ----------------------------------------------------


def round_at(run: TicketRun, sparsity: float | None = None) -> Round:
    """Returns the run's finished pruned round at `sparsity` (default: the highest finished round)."""
    rounds = [r for r in run.rounds if r.index > 0]
    if not rounds:
        raise ControlError(f"{run.folder} has no finished pruned round yet; let find_ticket run further")
    if sparsity is None:
        return rounds[-1]
    for r in rounds:
        if abs(r.sparsity - sparsity) < 1e-6:
            return r
    have = ", ".join(f"{r.sparsity:g}" for r in rounds)
    raise ControlError(f"{run.folder} has no finished round at sparsity {sparsity:g} (it has {have}); "
                       f"pick one of those or run find_ticket further")


# --- all controls for one IMP run ------------------------------------------------------------------


def controls_folder(output_dir: str | Path, sparsity: float) -> Path:
    """Returns the folder holding the controls at one sparsity: <output_dir>/sparsity_0.50."""
    return Path(output_dir) / f"sparsity_{sparsity:.2f}"


def run_controls(imp_run: TicketRun | str | Path, sparsity: float | None = None, controls=DEFAULT_CONTROLS,
                 seeds: list[int] | None = None, output_dir: str | Path | None = None, progress: bool = True,
                 echo=print, **placement) -> dict[str, list[dict]]:
    """Runs each control for each seed at the IMP round's sparsity; returns {control: [result per seed]}.

    `imp_run` is a find_ticket output folder or the run read from it (ticket.read_run). Controls
    are fine-tuned with the IMP run's own config (model, data, fine-tuning settings); `placement`
    may move its data folder or device (data_dir=..., device=...) when a folder is given. Each result is
    written to <output_dir>/sparsity_S/<control>/seed_<k>.json (with the mask next to it) as soon
    as it is done; results already there are loaded, not recomputed.
    """
    unknown = [name for name in controls if name not in CONTROLS]
    if unknown:
        raise ControlError(f"unknown control '{unknown[0]}'; choose from {', '.join(CONTROLS)}")
    run = imp_run if isinstance(imp_run, TicketRun) else read_run(imp_run, progress, with_data=False, **placement)
    imp = round_at(run, sparsity)
    seeds = list(seeds or run.config.seeds)
    folder = controls_folder(output_dir or run.folder / "controls", imp.sparsity)
    todo = [(c, s) for c in controls for s in seeds if not result_path(folder, c, s).exists()]
    if echo:
        echo(f"controls for {run.task.display_name} at {100 * imp.sparsity:g}% sparsity (IMP round {imp.index}): "
             f"{len(todo)} of {len(controls) * len(seeds)} runs to do; results in {folder}")
    if todo and not run.data:
        with distributed.rank_0_first():
            run.data = load_task_data(run.config, run.task, progress)
    results = {control: [run_one_control(run, imp.mask, control, seed, folder, progress) for seed in seeds]
               for control in controls}
    write_summary(run.folder, run.rounds, run.task, run.config.structure,
                  controls=stored_results(folder.parent))  # the curve with them
    return results


def stored_results(root: Path) -> dict[str, list[dict]]:
    """Returns {control: [result, ...]} of every finished control under a controls folder, at any sparsity."""
    results = {}
    for path in sorted(root.glob("sparsity_*/*/seed_*.json")):
        results.setdefault(path.parent.name, []).append(json.loads(path.read_text()))
    return results


def run_one_control(run: TicketRun, imp_mask: Mask, control: str, seed: int, folder: Path,
                    progress: bool = True) -> dict:
    """Returns the stored result of one (control, seed), running and writing it first if it is not there."""
    path = result_path(folder, control, seed)
    if path.exists():
        return json.loads(path.read_text())
    started = time.perf_counter()
    extra = {}
    if control in ("random_pruning", "random_pruning_layerwise"):
        mask, metrics = run_random_pruning(run, imp_mask, seed, control.endswith("layerwise"), progress)
    elif control in ("random_reinit", "random_reinit_fresh"):
        how = "fresh" if control.endswith("fresh") else "shuffle"
        mask, metrics = run_random_reinit(run, imp_mask, seed, how, progress)
    elif control == "standard_pruning":
        checkpoint = path.with_name(f".seed_{seed}.partial.pt")
        mask, metrics, rounds = standard_pruning(run, imp_mask, seed, progress, checkpoint)
        extra["rounds"] = rounds
    else:
        mask, metrics = run_oneshot(run, imp_mask, seed, progress)
    mask.save(path.with_name(f"seed_{seed}.mask.pt"))
    result = {"control": control, "seed": seed, "task": run.task.name, "sparsity": mask.sparsity,
              "imp_sparsity": imp_mask.sparsity, "metrics": metrics,
              "seconds": round(time.perf_counter() - started, 1), **extra}
    files.write_text(path, json.dumps(result, indent=2) + "\n")
    if control == "standard_pruning" and distributed.is_writer():
        path.with_name(f".seed_{seed}.partial.pt").unlink(missing_ok=True)
    return result


def result_path(folder: Path, control: str, seed: int) -> Path:
    """Returns where run_one_control writes a (control, seed) result: <folder>/<control>/seed_<k>.json."""
    return folder / control / f"seed_{seed}.json"  # the folder is made by the first write into it


def table2_results(run: TicketRun, imp: Round, controls: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Returns {setting: [metrics per seed]}: the run's dense round and its IMP round, then each control's."""
    results = {"dense": run.rounds[0].metrics, "imp": imp.metrics}
    results.update({name: [result["metrics"] for result in runs] for name, runs in controls.items()})
    return results


def write_table2(rows: list[dict], task: Task, folder: Path) -> str:
    """Writes table2.csv and table2.md into `folder`; returns the text table (for printing)."""
    write_csv(rows, folder / "table2.csv")
    files.write_text(folder / "table2.md", format_table2(rows, task, markdown=True) + "\n")
    return format_table2(rows, task)


# --- command line ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m minilth.controls",
        description="Run the controls of an IMP run (find_ticket output folder) at one of its sparsities, "
                    "fine-tuned with the run's own settings, and print the paper's Table 2 for it: full model, "
                    "IMP, and each control, mean/std/min/max over seeds. Every (control, seed) is written as "
                    "soon as it finishes; rerun the same command to resume. Controls: "
                    + "; ".join(f"{name}: {text}" for name, text in CONTROLS.items()),
        epilog="example: python -m minilth.controls --run runs/rte --at-sparsity 0.5 --seeds 0 1 2")
    parser.add_argument("--run", required=True, help="the find_ticket output folder (e.g. runs/rte)")
    parser.add_argument("--at-sparsity", type=float, default=None,
                        help="the IMP round to compare at (default: the highest finished round)")
    parser.add_argument("--controls", nargs="+", default=list(DEFAULT_CONTROLS), choices=list(CONTROLS),
                        metavar="CONTROL", help=f"any of: {', '.join(CONTROLS)} (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the IMP run's seeds")
    add_arguments(parser, TicketConfig, only=Experiment.PLACEMENT, optional=True)  # moved data, another device
    add_command_options(parser, output="<run>/controls")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def run(args) -> int:
    """Runs the controls of one IMP run and prints the Table-2 comparison; returns 0."""
    placement = {name: getattr(args, name) for name in Experiment.PLACEMENT if hasattr(args, name)}
    output = Path(args.output or Path(args.run) / "controls")
    started = time.perf_counter()
    imp_run = read_run(args.run, progress=not args.quiet, with_data=False, **placement)
    distributed.start(imp_run.config.device)  # under torchrun: join the other ranks
    results = run_controls(imp_run, args.at_sparsity, args.controls, args.seeds, output, progress=not args.quiet)
    imp = round_at(imp_run, args.at_sparsity)
    folder = controls_folder(output, imp.sparsity)
    rows = table2(table2_results(imp_run, imp, results), imp_run.task, imp.sparsity)
    print(write_table2(rows, imp_run.task, folder))
    print(f"{time.perf_counter() - started:.0f} s; table in {folder / 'table2.csv'} and {folder / 'table2.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
