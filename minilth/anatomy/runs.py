"""What is looked at: the masks of a find_ticket folder (every round, its random-pruning control, one-shot pruning of
theta_0) or of a mask file, and a round's model fine-tuned again exactly as the run fine-tuned it.

    ticket = read_ticket("runs/classroom")              # or "STS-B=runs/classroom", "mask.pt", "MLM=mlm/mask.pt"
    ticket.mask, ticket.rounds, ticket.random           # the ticket, every pruned round, a random mask like it
    model, metrics = finetuned_model(run, run.rounds[2], seed=0)
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..checkpoints import load_mask
from ..errors import MinilthError
from ..lottery.baselines import controls_folder, oneshot_mask, random_pruning_mask, result_path
from ..lottery.mask_transfer import source_label
from ..lottery.run_folder import Round, RoundChoice, TicketRun, read_run, round_at
from ..prune import Mask, rewind, snapshot
from ..ticket import rewind_point, train_subnetwork
from ..train import model_for_task

logger = logging.getLogger(__name__)


@dataclass
class Ticket:
    """A mask to look at, with what its source holds beside it."""

    label: str
    mask: Mask  # the ticket: a run's round at the chosen sparsity (default: its last), or a mask file's mask
    run: TicketRun | None = None  # the find_ticket run it comes from (None for a mask file)
    round: Round | None = None  # the run's round whose mask it is
    rounds: dict[str, Mask] = field(default_factory=dict)  # every pruned round's mask: {"round 1 (25%)": mask}
    random: Mask | None = None  # the random-pruning control's mask at its sparsity (a run's first seed's, if run)


def read_ticket(source: str | Path, choice: RoundChoice | None = None, **placement) -> Ticket:
    """Returns the ticket of a find_ticket folder (its round at the sparsity `choice` picks for its task, default
    the last) or of a mask file; "LABEL=PATH" names it LABEL (default: the folder's name, or the file's as
    mask_transfer names it). `placement` (data_dir, device) moves the run's data or device."""
    label, _, path = str(source).rpartition("=")
    path = Path(path)
    if path.is_file():
        mask = load_mask(path)
        return Ticket(label or source_label(path, mask), mask)
    if not path.is_dir():
        raise MinilthError(f"{path} does not exist; give a find_ticket output folder or a mask file (mask.pt)")
    run = read_run(path, progress=False, with_data=False, **placement)
    chosen = round_at(run, (choice or RoundChoice()).at(run.task.name))
    rounds = {f"round {r.index} ({100 * r.sparsity:.0f}%)": r.mask for r in run.rounds if r.index > 0}
    return Ticket(label or path.name, chosen.mask, run, chosen, rounds, random_mask(run, chosen))


def random_mask(run: TicketRun, round_: Round) -> Mask:
    """Returns the mask of the run's random-pruning control at the round's sparsity (seed 0's, as
    `python -m minilth.controls` wrote it), or one drawn the same way (seed 0) when it did not run."""
    stored = result_path(controls_folder(run.folder / "controls", round_.sparsity), "random_pruning", 0)
    stored = stored.with_name("seed_0.mask.pt")
    if stored.is_file():
        return load_mask(stored)
    return random_pruning_mask(round_.mask.flags, round_.mask, seed=0)  # only the shapes are read


def oneshot(ticket: Ticket) -> Mask:
    """Returns the mask of one-shot magnitude pruning of the pre-trained weights theta_0 at the ticket's sparsity,
    over the same matrices (the paper's one-shot control); needs the run's checkpoint."""
    if ticket.run is None:
        raise MinilthError(f"{ticket.label} is a mask file: one-shot pruning needs the run folder (its checkpoint)")
    return oneshot_mask(model_for_task(ticket.run.checkpoint, ticket.run.task), ticket.mask)


def finetuned_model(run: TicketRun, round_: Round, seed: int, progress: bool = True):
    """Returns (model, metrics): round `round_`'s subnetwork rewound and fine-tuned with `seed` again, as the
    IMP round did (ticket.imp_round's steps), so that its trained weights can be looked at.

    On the CPU this repeats the run bit for bit (its metrics equal those the round recorded); on
    another device or precision it is another draw, and a warning says by how much the metric differs.
    """
    if not run.data:
        raise MinilthError("read the run with its data (read_run(folder)) to fine-tune its models again")
    before = dataclasses.replace(run, rounds=run.rounds[:round_.index])  # the run as it stood when the round began
    model = model_for_task(run.checkpoint, run.task, seed)
    theta_0 = snapshot(model)
    rewind(model, rewind_point(before, seed, theta_0), round_.mask)
    metrics = train_subnetwork(before, model, round_.mask, seed, progress=progress).final
    _warn_if_not_reproduced(run, round_, seed, metrics)
    return model.eval(), metrics


def _warn_if_not_reproduced(run: TicketRun, round_: Round, seed: int, metrics: dict) -> None:
    metric = run.task.ticket_metric
    if seed not in run.config.seeds:
        return
    recorded = round_.metrics[run.config.seeds.index(seed)][metric]
    if abs(recorded - metrics[metric]) > 1e-6:
        logger.warning(f"round {round_.index}, seed {seed} fine-tuned again scores {metric} {metrics[metric]:.4f}, "
                       f"the run recorded {recorded:.4f} (another device or precision): its model is another draw")
