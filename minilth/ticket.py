"""Finding a lottery ticket: iterative magnitude pruning (IMP) with rewinding, the paper's algorithm.

Round k starts from a mask m_k (round 0's prunes nothing) and does three things:

    rewind   theta  <- m_k * theta_0        the pre-trained weights (or theta_i, after i steps of
                                            the dense fine-tuning); pruned weights are zero
    train    fine-tune the subnetwork on the task, once per seed; pruned weights stay zero
    prune    m_k+1  <- drop the smallest-magnitude weights the mask still keeps, globally over the
                       prunable matrices, until the next sparsity of the schedule (10% of the
                       original weights more per round, by default)

`imp_round` is exactly that, and `find_ticket` runs rounds until the target sparsity. Round 0's
fine-tuning is the dense baseline a ticket is judged against (same seeds, same data). The first
seed's trained model is the one pruned (a structured run may rank on every seed's: --rank-on).

What minilth rewinds: the whole model, encoder and task head, to its state before fine-tuning
(theta_0: the pre-trained encoder and the head as initialised by the seed). The reference code
keeps the head trained in the previous round instead; `rewind_head=False` does that.

Beside this file: the settings (config.py: TicketConfig), the run's folder, resuming and saving
(lottery/run_folder.py), the verdict (lottery/verdict.py) and, with `--structure`, pruning whole
heads and neurons instead of single weights (structured/).
"""
from __future__ import annotations

import time
from pathlib import Path

from .config import TicketConfig
from .lottery.plan import Clock, describe_plan
from .lottery.run_folder import Round, TicketRun, load_heads, save_round, start_run
from .prune import Mask, is_head, magnitude_prune, rewind, snapshot
from .scale import distributed
from .structured import prune_units
from .train import History, finetune, model_for_task, training_steps


def find_ticket(config: TicketConfig, output_dir: str | Path, progress: bool = True, echo=print) -> list[Round]:
    """Runs IMP to the target sparsity, resuming from `output_dir`'s finished rounds; returns every round.

    `echo` receives the plan before any training, and an estimate of the time left once the
    first fine-tuning has run a few steps (None: silent).
    """
    run = start_run(config, output_dir, progress)
    clock = Clock(run, echo)
    if echo and not run.finished:
        echo(describe_plan(run))
    while not run.finished:
        round_ = imp_round(run, progress, on_step=clock.tick)
        save_round(run, round_)  # written before the next round begins: a rerun resumes from here
        run.add(round_)  # the next round trains with the mask this one pruned
    return run.rounds


def imp_round(run: TicketRun, progress: bool = True, on_step=None) -> Round:
    """Returns the next round of IMP: rewind and train the subnetwork once per seed, then prune it further."""
    index, mask, started = len(run.rounds), run.mask, time.perf_counter()
    metrics, heads, theta_i, trained = [], {}, {}, []
    for seed in run.config.seeds:
        # 1. Rewind: the surviving weights back to theta_0 (or theta_i), the pruned ones to zero.
        model = model_for_task(run.checkpoint, run.task, seed)  # theta_0: pre-trained, its head drawn from the seed
        rewind(model, rewind_point(run, seed, model), mask)
        # 2. Train: fine-tune the subnetwork; the mask keeps the pruned weights at zero.
        history = train_subnetwork(run, model, mask, seed, progress=progress, on_step=on_step)
        metrics.append(history.final)
        heads[seed] = head_of(model)
        if history.snapshot is not None:  # round 0 of a run rewinding to theta_i: the weights after i steps
            theta_i = {"step": history.snapshot_step, "weights": {**theta_i.get("weights", {}), seed: history.snapshot}}
        if not trained or run.config.rank_on == "every_seed":  # the model(s) the next mask is ranked on
            trained.append(model)
    # 3. Prune: drop the smallest surviving weights (or heads and neurons) of the first seed's trained model, globally.
    next_mask = None
    if index + 1 < len(run.sparsities):  # (under torchrun: once, on rank 0, and sent to every rank)
        next_mask = distributed.on_rank_0(prune, run, trained, mask, run.sparsities[index + 1])
    return Round(index, run.sparsities[index], mask, metrics, time.perf_counter() - started, heads, next_mask, theta_i)


def prune(run: TicketRun, trained: list, mask: Mask, sparsity: float | dict[str, int]) -> Mask:
    """Returns the mask pruned further as the run prunes: the smallest weights of the first seed's trained model,
    globally (the paper), or with config.structure the least important heads and/or neurons (structured/).

    `sparsity` is the schedule's fraction, or exact counts to match another mask ({"weights": n},
    or {"heads": n, "neurons": m}).
    """
    if run.config.structured:
        return prune_units(run.config, run.task, run.data[0], trained, mask, sparsity)
    if isinstance(sparsity, dict):
        sparsity = sparsity["weights"] / mask.num_total  # rounds back to exactly that count
    return magnitude_prune(trained[0], mask, sparsity)


def rewind_point(run: TicketRun, seed: int, theta_0) -> dict:
    """Returns the weights a round starts from: theta_0 (or theta_i after round 0), with the last trained head
    instead of the initial one when the head is not rewound."""
    weights = run.theta_i["weights"][seed] if run.theta_i else snapshot(theta_0)
    if not run.config.rewind_head and run.rounds:
        weights = {**weights, **load_heads(run, len(run.rounds) - 1)[seed]}
    return weights


def train_subnetwork(run: TicketRun, model, mask: Mask, seed: int, rewound: bool = True, progress: bool = True,
                     on_step=None) -> History:
    """Fine-tunes a masked model as every IMP round does; returns its History.

    Round 0, the dense fine-tuning, starts at step 0; a model rewound after it continues from the
    rewind step (theta_i's step i, or 0 for theta_0), and one that is not (standard pruning) starts
    again at 0. Round 0 of a run that rewinds to theta_i keeps its weights at that point in
    history.snapshot. With lr_decay="all_rounds", every fine-tuning restarts a linear decay spanning
    all the run's rounds.
    """
    config = run.config
    steps = training_steps(config, run.task, len(run.data[0].features))
    return finetune(model, run.task, *run.data, config, seed=seed, mask=mask,
                    start_step=run.theta_i.get("step", 0) if rewound and run.rounds else 0,
                    lr_decay_steps=steps * len(run.sparsities) if config.lr_decay == "all_rounds" else None,
                    snapshot_at=config.rewind_at if config.rewind_at and not run.rounds else None,
                    progress=progress, on_step=on_step)


def head_of(model) -> dict:
    """Returns a CPU copy of the task head's tensors (the names outside `bert.`)."""
    return {name: tensor for name, tensor in snapshot(model).items() if is_head(name)}
