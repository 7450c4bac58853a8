"""The controls that say whether an IMP subnetwork is a winning ticket, each at the IMP mask's sparsity.

    imp_mask = load_mask("runs/rte/rounds/round_05/mask.pt")      # 50% sparse
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

    python -m minilth.controls --imp-run runs/rte --sparsity 0.5 --controls random_pruning random_reinit
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import files
from ..checkpoints import save_mask
from ..checkpoints.download import file_sha256
from ..checkpoints.masks import mask_digest
from ..prune import (Mask, MaskError, TensorsLike, count_to_prune, magnitude_prune, named_tensors, prune_by_scores,
                     rewind, snapshot, sparsity_schedule)
from ..scale import distributed
from ..schemas import STANDARD_PRUNING_PARTIAL, FileError, control_result, not_a_folder, read_json, read_torch
from ..settings import SettingsError, check, check_choices, flag, setting
from ..structured import pruned_units, random_structured_mask
from ..ticket import prune, rewind_point, train_subnetwork
from ..train import model_for_task
from .report import format_table2, write_csv
from .run_folder import TicketRun, fingerprint_differences, load_task_data, read_run, round_at
from .verdict import write_summary

logger = logging.getLogger(__name__)

CONTROLS = {
    "random_pruning": "random mask of the same global sparsity over the same prunable set",
    "random_pruning_layerwise": "random mask with each matrix as sparse as in the IMP mask",
    "random_reinit": "the IMP mask over the pre-trained matrices with their entries shuffled (reference code)",
    "random_reinit_fresh": "the IMP mask over matrices drawn afresh from BERT's initialisation",
    "standard_pruning": "prune the fine-tuned weights and keep training them, no rewinding (IMP's schedule)",
    "oneshot": "one-shot magnitude pruning of the pre-trained weights theta_0, no training first",
}
TABLE_2 = ("random_pruning", "random_reinit", "standard_pruning", "oneshot")  # the paper's Table 2


@dataclass(kw_only=True)
class ControlSettings:
    """the controls: is it a winning ticket?"""

    controls: list[str] = setting([], f"controls to run at the IMP round's sparsity, each with every seed: "
                                      f"{'; '.join(f'{name}: {text}' for name, text in CONTROLS.items())}. "
                                      f"The paper's Table 2: {' '.join(TABLE_2)}",
                                  choices=tuple(CONTROLS), nargs="*")

    def __post_init__(self):
        check_choices(self)
        check(len(set(self.controls)) == len(self.controls), f"{flag('controls')} names a control twice")


# --- the masks and weights of each control ---------------------------------------------------------


def random_prune(model_or_sd: TensorsLike, mask: Mask, target_sparsity: float | None = None, *,
                 seed: int = 0, generator: torch.Generator | None = None,
                 layerwise_like: Mask | None = None) -> Mask:
    """Returns a new mask pruning uniformly random kept weights, to `target_sparsity` globally or like `layerwise_like`.

    With `layerwise_like`, each tensor is pruned to that mask's sparsity of the same tensor.
    Already-pruned weights of `mask` stay pruned (start from Mask.dense for a fresh random mask).
    Counts are exact: globally round(target * total); layer-wise each tensor gets exactly as many
    zeros as the same tensor of `layerwise_like`. `generator` wins over `seed` when both are given.
    """
    mask.check_fits(model_or_sd)
    if (target_sparsity is None) == (layerwise_like is None):
        raise MaskError("give exactly one of target_sparsity (global) or layerwise_like (per tensor)")
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    # Random pruning is magnitude pruning of random scores: the same exact-count machinery.
    scores = []
    for flag_ in mask.flags.values():
        score = torch.rand(flag_.numel(), generator=generator)  # (numel,)
        score[~flag_.flatten()] = -1.0
        scores.append(score)
    if layerwise_like is None:
        return prune_by_scores(scores, mask, count_to_prune(target_sparsity, mask.num_total))
    if layerwise_like.names() != mask.names():
        raise MaskError("layerwise_like must mask the same tensors as mask, in the same order")
    return Mask({name: prune_by_scores([score], Mask({name: flag_}), layerwise_like.pruned_count(name))[name]
                 for score, (name, flag_) in zip(scores, mask.items())})


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


def oneshot_prune(theta0: TensorsLike, target_sparsity: float, names: list[str] | None = None) -> Mask:
    """Returns the one-shot magnitude-pruning mask of theta_0 itself (the paper's one-shot control)."""
    return magnitude_prune(theta0, Mask.dense(theta0, names), target_sparsity)


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
        raise MaskError(f"unknown re-initialisation '{how}'; use 'shuffle' or 'fresh'")
    tensors = named_tensors(model)
    unknown = [name for name in names if name not in tensors]
    if unknown:
        raise MaskError(f"the model has no tensor named {', '.join(unknown[:3])}; pass names of its weights")
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


def starting_model(run: TicketRun, seed: int):
    """Returns the model an IMP round starts from, before masking: theta_0 (or theta_i), the head from the seed."""
    model = model_for_task(run.checkpoint, run.task, seed)
    rewind(model, rewind_point(run, seed, snapshot(model)))
    return model


def finetune_control(run: TicketRun, model, mask: Mask, seed: int, progress: bool = True) -> dict:
    """Returns the final metrics of a control's subnetwork, trained exactly as an IMP round trains: the mask over
    the round's starting weights (theta_0 or theta_i, which `model` already holds), then fine-tuned."""
    mask.apply_to(model)
    return train_subnetwork(run, model, mask, seed, progress=progress).final


def pruned_counts(run: TicketRun, model, mask: Mask) -> dict[str, tuple[int, int]]:
    """Returns (pruned, total) of the mask in the units the run prunes: {"weights": ...}, or per kind of unit
    {"heads": ..., "neurons": ...} (a structured run's)."""
    if run.config.structured:
        return pruned_units(run.config, mask, model.config.num_attention_heads)
    return {"weights": (mask.num_pruned, mask.num_total)}


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
    mask = prune(run, [model], Mask.dense(model, imp_mask.names()), target)
    return mask, finetune_control(run, model, mask, seed, progress)


def standard_pruning(run: TicketRun, imp_mask: Mask, seed: int, progress: bool = True,
                     checkpoint: Path | None = None) -> tuple[Mask, dict, list[dict]]:
    """Returns (mask, final metrics, per-round records) of pruning without rewinding, on IMP's schedule.

    Round 0 fine-tunes the dense model; each later round prunes the previous round's trained
    weights (globally, by magnitude; or its heads and neurons, as the run prunes) and keeps training
    them from there. The last round reaches exactly the IMP mask's number of pruned weights (units).
    With `checkpoint`, the weights and mask after each round are saved there, and an interrupted
    run continues from the last finished round (a damaged checkpoint is started over).
    """
    model = model_for_task(run.checkpoint, run.task, seed)
    counts = pruned_counts(run, model, imp_mask)  # {kind: (pruned, total)}
    target = {kind: pruned for kind, (pruned, _) in counts.items()}
    # The schedule's levels below the target, then the target itself: the last level can be off
    # by a fraction of a weight (unit) from the schedule's value, and must not count as an extra round.
    below = [s for s in sparsity_schedule(max(p / t for p, t in counts.values()), run.config.rate, run.config.schedule)
             if {kind: round(s * total) for kind, (_, total) in counts.items()} != target]
    levels = [0.0] + below + [target]
    mask, state, records = Mask.dense(model, imp_mask.names()), snapshot(model), []
    made_by = json.dumps({"fingerprint": run.fingerprint, "imp_mask": mask_digest(imp_mask), "seed": seed})
    if checkpoint is not None and checkpoint.exists():
        mask, state, records = _resume_standard_pruning(checkpoint, mask, state, made_by)
    for index in range(len(records), len(levels)):
        # The whole previous state (encoder and head) is the starting point: that is "no rewinding".
        model = model_for_task(run.checkpoint, run.task, seed)
        rewind(model, state)
        if index > 0:
            mask = prune(run, [model], mask, levels[index])
        mask.apply_to(model)
        history = train_subnetwork(run, model, mask, seed, rewound=False, progress=progress)
        state = snapshot(model)
        records.append({"round": index, "sparsity": mask.sparsity, "metrics": history.final})
        if checkpoint is not None:
            files.save({"flags": mask.flags, "state": state, "records": json.dumps(records), "made_by": made_by},
                       checkpoint)
    return mask, records[-1]["metrics"], records


def _resume_standard_pruning(checkpoint: Path, mask: Mask, state: dict, made_by: str) -> tuple[Mask, dict, list]:
    """Returns (mask, state, records) saved after standard pruning's last finished round; a checkpoint that is
    damaged, or was made by other settings, another IMP mask or seed (`made_by`), is started over, saying so, with
    the fresh (mask, state)."""
    try:
        saved = read_torch(checkpoint, STANDARD_PRUNING_PARTIAL)
        if saved.get("made_by") != made_by:
            raise FileError(f"{checkpoint} was made by other settings, another IMP mask or another seed")
        resumed = Mask(saved["flags"])
        resumed.check_fits(state)
        return resumed, saved["state"], json.loads(saved["records"])
    except ValueError as error:  # FileError, MaskError, json's: its rounds are redone (a folder is refused)
        logger.warning(f"{error}; standard pruning starts this seed over")
        return mask, state, []


# --- all controls for one IMP run ------------------------------------------------------------------


def controls_folder(output_dir: str | Path, sparsity: float) -> Path:
    """Returns the folder holding the controls at one sparsity: <output_dir>/sparsity_0.50."""
    return Path(output_dir) / f"sparsity_{sparsity:.2f}"


def result_path(folder: Path, control: str, seed: int) -> Path:
    """Returns where run_one_control writes a (control, seed) result: <folder>/<control>/seed_<k>.json."""
    return folder / control / f"seed_{seed}.json"  # the folder is made by the first write into it


def stored_result(path: Path, run: TicketRun, imp_mask: Mask | None = None) -> dict | None:
    """Returns the finished (control, seed) result at `path` (result_path's), or None when there is none; one that is
    damaged, or was made by other settings, another checkpoint or (when `imp_mask` is given) against another IMP
    mask, is removed, saying so, so that it is run again."""
    if not path.exists():
        return None
    try:
        return check_result(path, run, imp_mask)
    except (FileError, SettingsError) as error:  # a folder in its place is refused instead
        logger.warning(f"{error}: it is run again")
        if distributed.is_writer():
            path.unlink()
        return None


def check_result(path: Path, run: TicketRun, imp_mask: Mask | None = None) -> dict:
    """Returns the control result at `path` after checking that it is the run's: read through its schema, of the
    control, seed and task its path names, made by the run's fingerprint against `imp_mask` (when given), its
    mask file the one it wrote. A result written before results carried a fingerprint is adopted as the run's,
    whose config.json it was read with. FileError otherwise."""
    result = read_json(path, control_result(run.task.metrics))
    if (result["control"], f"seed_{result['seed']}", result["task"]) != (path.parent.name, path.stem, run.task.name):
        raise FileError(f"{path} holds {result['control']} seed {result['seed']} of {result['task']}, not what its "
                        f"path and run name")
    if "fingerprint" not in result:
        return result
    changed = fingerprint_differences(result["fingerprint"], run.config, run.fingerprint, path)
    if changed:
        raise FileError(f"{path} was made with other settings ({', '.join(changed)} differ)")
    if imp_mask is not None and result.get("imp_mask") != mask_digest(imp_mask):
        raise FileError(f"{path} was made against another IMP mask than this round's")
    mask_file = not_a_folder(path.with_name(f"{path.stem}.mask.pt"))
    if not mask_file.is_file() or file_sha256(mask_file) != result.get("mask_file"):
        raise FileError(f"{mask_file} is missing, or is not the mask its result was made with")
    return result


def run_controls(imp_run: TicketRun | str | Path, sparsity: float | None = None, controls=TABLE_2,
                 seeds: list[int] | None = None, output_dir: str | Path | None = None, progress: bool = True,
                 echo=print, **placement) -> dict[str, list[dict]]:
    """Runs each control for each seed at the IMP round's sparsity; returns {control: [result per seed]}.

    `imp_run` is a find_ticket output folder or the run read from it (run_folder.read_run). Controls
    are fine-tuned with the IMP run's own config (model, data, fine-tuning settings); `placement`
    may move its data folder or device (data_dir=..., device=...) when a folder is given. Each result is
    written to <output_dir>/sparsity_S/<control>/seed_<k>.json (with the mask next to it) as soon
    as it is done; results already there are loaded, not recomputed. The run's summary.png then
    draws every finished control beside the IMP curve.
    """
    ControlSettings(controls=list(controls))  # an unknown control fails here, before any work
    run = imp_run if isinstance(imp_run, TicketRun) else read_run(imp_run, progress, with_data=False, **placement)
    imp = round_at(run, sparsity)
    seeds = list(seeds or run.config.seeds)
    folder = controls_folder(output_dir or run.folder / "controls", imp.sparsity)
    todo = [(c, s) for c in controls for s in seeds if stored_result(result_path(folder, c, s), run, imp.mask) is None]
    if echo:
        echo(f"controls for {run.task.display_name} at {100 * imp.sparsity:g}% sparsity (IMP round {imp.index}): "
             f"{len(todo)} of {len(controls) * len(seeds)} runs to do; results in {folder}")
    if todo and not run.data:
        with distributed.rank_0_first():
            run.data = load_task_data(run.config, run.task, run.checkpoint, progress)
    results = {control: [run_one_control(run, imp.mask, control, seed, folder, progress) for seed in seeds]
               for control in controls}
    write_summary(run.folder, run.rounds, run.task, run.config.structure,
                  controls=stored_results(folder.parent, run))  # the curve with them
    return results


def stored_results(root: Path, run: TicketRun) -> dict[str, list[dict]]:
    """Returns {control: [result, ...]} of every finished control of the run under a controls folder, at any
    sparsity."""
    results = {}
    for path in sorted(root.glob("sparsity_*/*/seed_*.json")):
        result = stored_result(path, run)
        if result is not None:
            results.setdefault(path.parent.name, []).append(result)
    return results


def run_one_control(run: TicketRun, imp_mask: Mask, control: str, seed: int, folder: Path,
                    progress: bool = True) -> dict:
    """Returns the stored result of one (control, seed), running and writing it first if it is not there."""
    path = result_path(folder, control, seed)
    stored = stored_result(path, run, imp_mask)
    if stored is not None:
        return stored
    started = time.perf_counter()
    extra = {}
    partial = path.with_name(f".seed_{seed}.partial.pt")
    if control in ("random_pruning", "random_pruning_layerwise"):
        mask, metrics = run_random_pruning(run, imp_mask, seed, control.endswith("layerwise"), progress)
    elif control in ("random_reinit", "random_reinit_fresh"):
        how = "fresh" if control.endswith("fresh") else "shuffle"
        mask, metrics = run_random_reinit(run, imp_mask, seed, how, progress)
    elif control == "standard_pruning":
        mask, metrics, extra["rounds"] = standard_pruning(run, imp_mask, seed, progress, partial)
    elif control == "oneshot":
        mask, metrics = run_oneshot(run, imp_mask, seed, progress)
    else:
        raise MaskError(f"unknown control '{control}'; use any of {', '.join(CONTROLS)}")
    mask_file = save_mask(mask, path.with_name(f"seed_{seed}.mask.pt"))
    result = {"control": control, "seed": seed, "task": run.task.name, "sparsity": mask.sparsity,
              "imp_sparsity": imp_mask.sparsity, "metrics": metrics,
              "seconds": round(time.perf_counter() - started, 1), **extra, "fingerprint": run.fingerprint,
              "imp_mask": mask_digest(imp_mask), "mask_file": file_sha256(mask_file) if distributed.is_writer() else ""}
    files.write_text(path, json.dumps(result, indent=2) + "\n")
    if distributed.is_writer():
        partial.unlink(missing_ok=True)
    return result


def table2_results(run: TicketRun, imp, controls: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Returns {setting: [metrics per seed]}: the run's dense round and its IMP round, then each control's."""
    results = {"dense": run.rounds[0].metrics, "imp": imp.metrics}
    results.update({name: [result["metrics"] for result in runs] for name, runs in controls.items()})
    return results


def write_table2(rows: list[dict], task, folder: Path) -> str:
    """Writes table2.csv and table2.md into `folder`; returns the text table (for printing)."""
    write_csv(rows, folder / "table2.csv")
    files.write_text(folder / "table2.md", format_table2(rows, task, markdown=True) + "\n")
    return format_table2(rows, task)
