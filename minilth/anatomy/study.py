"""Everything at once for run folders and mask files: the figures (PNG and SVG) and anatomy.json, what the command
`python -m minilth.inside_ticket` writes.

    look_inside(["STS-B=runs/grid/imp/stsb", "MRPC=runs/grid/imp/mrpc", "extra.pt"], "runs/anatomy",
                InsideSettings(attention=True))
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import files
from ..errors import MinilthError
from ..checkpoints import load_tokenizer
from ..data.batches import collate
from ..checkpoints.masks import mask_digest
from ..lottery.run_folder import RoundChoice, load_task_data
from ..prune import Mask
from ..settings import check, setting
from ..train import prepare_batch
from .attention import attention_maps, attention_measures, plot_attention_maps, plot_head_measure
from .overlap import format_overlap, overlap_by_part, overlap_matrix, plot_overlap, plot_overlap_by_part
from .runs import Ticket, finetuned_model, oneshot, read_ticket
from .sparsity import format_sparsity, plot_sparsity, sparsity_table


@dataclass(kw_only=True)
class InsideSettings(RoundChoice):
    """what to look at"""

    oneshot: bool = setting(True, "compare each run's ticket with one-shot magnitude pruning of its pre-trained "
                                  "weights at the same sparsity (loads the run's checkpoint)")
    attention: bool = setting(False, "fine-tune each run's dense model and ticket again with every seed and "
                                     "compare their attention on its dev set (a fine-tuning takes minutes on a CPU)")
    seeds: list[int] | None = setting(None, "the seeds fine-tuned again for --attention (default: the run's)")
    attention_examples: int = setting(500, "dev examples the attention is measured on")
    data_dir: str | None = setting(None, "where the runs' data are, when not where they were")
    device: str | None = setting(None, "where to fine-tune again (default: the run's)")

    def __post_init__(self):
        super().__post_init__()
        check(self.attention_examples > 0, "--attention-examples must be a positive number of examples")


def look_inside(sources: list[str], output_dir: str | Path, settings: InsideSettings | None = None,
                progress: bool = True, echo=print) -> dict:
    """Returns the numbers written to <output_dir>/anatomy.json, after writing the figures beside it: where each
    mask prunes, how the masks overlap (every pair, and per layer) and, with settings.attention, the attention
    of each run's dense model and ticket; `echo` receives the same numbers as text."""
    settings = settings or InsideSettings()
    tickets = read_tickets(sources, settings)
    numbers, masks = mask_numbers(tickets, settings.oneshot)  # every pair is compared before anything is written
    output = Path(output_dir)
    write_mask_figures(numbers, masks, output, echo)
    for ticket in (t for t in tickets if settings.attention and t.run is not None):
        numbers["attention"][ticket.label] = look_at_attention(ticket, settings, output, progress, echo)
    files.write_text(output / "anatomy.json", json.dumps(numbers, indent=1) + "\n")
    return numbers


def read_tickets(sources: list[str], settings: InsideSettings) -> list[Ticket]:
    """Returns the ticket of each source (runs.read_ticket); MinilthError when two share a label."""
    tickets = [read_ticket(source, settings, data_dir=settings.data_dir, device=settings.device) for source in sources]
    labels = [ticket.label for ticket in tickets]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise MinilthError(f"two sources are named {twice[0]}: name each one, LABEL=PATH")
    return tickets


def mask_numbers(tickets: list[Ticket], with_oneshot: bool) -> tuple[dict, dict]:
    """Returns (the masks' numbers: sparsity tables, the overlap matrix and each pair with the first mask per
    layer; the masks of each ticket's sparsity figure, {label: {name: mask}})."""
    figures = {ticket.label: where_it_prunes(ticket, with_oneshot) for ticket in tickets}
    compared = masks_to_compare(tickets, with_oneshot)
    first, *others = compared
    numbers = {"sources": [describe(ticket) for ticket in tickets],
               "sparsity": {label: {name: sparsity_table(mask) for name, mask in masks.items()}
                            for label, masks in figures.items()},
               "overlap": overlap_matrix(compared),
               "overlap_by_layer": {f"{first} & {other}": overlap_by_part(compared[first], compared[other])
                                    for other in others},
               "attention": {}}
    return numbers, figures


def write_mask_figures(numbers: dict, figures: dict, output: Path, echo=print) -> None:
    """Writes sparsity_<label>, overlap and overlap_by_layer (PNG and SVG) and echoes their numbers."""
    for label, masks in figures.items():
        plot_sparsity(masks, output / f"sparsity_{slug(label)}")
        for name, table in numbers["sparsity"][label].items():
            echo(format_sparsity(table, f"% pruned: {label}, {name}"))
    plot_overlap(numbers["overlap"], output / "overlap")
    plot_overlap_by_part(numbers["overlap_by_layer"], output / "overlap_by_layer")
    echo(format_overlap(numbers["overlap"]))


def look_at_attention(ticket: Ticket, settings: InsideSettings, output: Path, progress: bool = True,
                      echo=print) -> dict:
    """Returns the attention study of a run's ticket (attention_study, without the models), after writing its
    figures: attention_maps_<label> (a dev example, dense and ticket of the first seed) and attention_change_<label>."""
    study = attention_study(ticket, settings, progress)
    models, seed = study.pop("models"), study["seeds"][0]
    tokens, maps = example_maps({name: models[f"{name} {seed}"] for name in ("dense", "ticket")}, ticket)
    plot_attention_maps(maps, tokens, changed_heads(study), output / f"attention_maps_{slug(ticket.label)}")
    plot_attention_study(study, output, slug(ticket.label))
    echo("\n".join(summary_lines(study)))
    return study


def describe(ticket: Ticket) -> dict:
    """Returns where a ticket comes from, for anatomy.json."""
    run = ticket.run
    return {"label": ticket.label, "sparsity": ticket.mask.sparsity, "round": ticket.round and ticket.round.index,
            "task": run and run.task.name, "model": run and run.config.model}


def slug(label: str) -> str:
    """Returns a label fit for a file name: "STS-B 50%" -> "sts-b_50"."""
    return "".join(c if c.isalnum() or c == "-" else "_" for c in label.lower()).strip("_")


def where_it_prunes(ticket: Ticket, with_oneshot: bool) -> dict[str, Mask]:
    """Returns the masks of a ticket's sparsity figure: each pruned round of its run (or the mask alone), its random
    mask and, with `with_oneshot`, one-shot pruning of theta_0."""
    masks = dict(ticket.rounds) or {ticket.label: ticket.mask}
    if ticket.random is not None:
        masks["random"] = ticket.random
    if with_oneshot and ticket.run is not None:
        masks["one-shot"] = oneshot(ticket)
    return masks


def masks_to_compare(tickets: list[Ticket], with_oneshot: bool) -> dict[str, Mask]:
    """Returns the masks of the overlap matrix: every ticket, the one-shot masks (each distinct one once: runs from
    the same weights at the same sparsity share it) and the first run's random mask."""
    masks = {ticket.label: ticket.mask for ticket in tickets}
    extra = [(f"{t.label} one-shot", oneshot(t)) for t in tickets if with_oneshot and t.run is not None]
    extra += [(f"{t.label} random", t.random) for t in tickets[:1] if t.random is not None]
    seen = {mask_digest(mask) for mask in masks.values()}
    for label, mask in extra:
        if mask_digest(mask) not in seen:
            seen.add(mask_digest(mask))
            masks[label] = mask
    return masks


# --- the attention of a run's dense model and ticket -------------------------------------------------


def attention_study(ticket: Ticket, settings: InsideSettings, progress: bool = True) -> dict:
    """Returns the attention measures of a run's dense model (round 0) and ticket, each fine-tuned again with every
    seed (runs.finetuned_model), over the first `attention_examples` of its dev set: the entropy of each model,
    the Jensen-Shannon divergence of each seed's dense model and ticket, and of two seeds' dense models (what
    fine-tuning noise alone changes); "models": the fine-tuned models, {"dense 0": model, "ticket 0": ...}."""
    run = ticket.run
    if not run.data:
        run.data = load_task_data(run.config, run.task, run.checkpoint, progress)
    seeds = settings.seeds or run.config.seeds
    models, metrics = {}, {}
    for seed in seeds:
        for name, round_ in (("dense", run.rounds[0]), ("ticket", ticket.round)):
            models[f"{name} {seed}"], metrics[f"{name} {seed}"] = finetuned_model(run, round_, seed, progress)
    pairs = [(f"dense {s}", f"ticket {s}") for s in seeds]
    pairs += [(f"{name} {a}", f"{name} {b}") for a, b in zip(seeds, seeds[1:]) for name in ("dense", "ticket")]
    measures = attention_measures(models, run.data[1], run.task, pairs, settings.attention_examples,
                                  progress=progress)
    return {"task": run.task.name, "sparsity": ticket.mask.sparsity, "seeds": list(seeds), "metrics": metrics,
            **measures, "models": models}


def head_mean(grid: list[list[float]]) -> float:
    """Returns the mean of an (L, nh) grid over every head."""
    return sum(map(sum, grid)) / sum(map(len, grid))


def changed_heads(study: dict, most: int = 2) -> list[tuple[int, int]]:
    """Returns the (layer, head) of the `most` heads whose attention the ticket changed most (the Jensen-Shannon
    divergence of dense and ticket, mean over seeds), then the head it changed least."""
    seeds = study["seeds"]
    grids = [study["js"][f"dense {s}|ticket {s}"] for s in seeds]
    change = {(layer, head): sum(grid[layer][head] for grid in grids) / len(grids)
              for layer in range(len(grids[0])) for head in range(len(grids[0][0]))}
    ranked = sorted(change, key=change.get, reverse=True)
    return ranked[:most] + ranked[-1:]


def summary_lines(study: dict) -> list[str]:
    """Returns what the attention study measured, in words: how much each seed's ticket changed the attention
    against what two dense seeds differ by, and for masked-language modelling the attention on the positions to
    predict; each comparison says whether it held for every seed."""
    seeds, js = study["seeds"], study["js"]
    changed = [head_mean(js[f"dense {s}|ticket {s}"]) for s in seeds]
    noise = [head_mean(js[f"dense {a}|dense {b}"]) for a, b in zip(seeds, seeds[1:])]
    values = lambda numbers: ", ".join(f"{v:.4f}" for v in numbers)  # noqa: E731
    lines = [f"{study['task']}, ticket at {100 * study['sparsity']:.0f}%, {study['tokens']:,} dev tokens: the "
             f"Jensen-Shannon divergence of the dense model's and the ticket's attention, mean over heads: "
             f"{values(changed)} bits (seeds {', '.join(map(str, seeds))})"]
    if noise:
        lines.append(f"two dense models fine-tuned with different seeds: {values(noise)} bits; "
                     + compare_all(changed, noise))
    if "target_mass" in study:
        mass = study["target_mass"]
        gains = [head_mean(mass[f"ticket {s}"]) - head_mean(mass[f"dense {s}"]) for s in seeds]
        lines.append(f"attention on the positions to predict, mean over heads (uniform attention would give "
                     f"{study['target_share']:.4f}), ticket minus dense: " + ", ".join(f"{g:+.4f}" for g in gains)
                     + ": " + sign_over_seeds(gains))
    return lines


def compare_all(values: list[float], baseline: list[float]) -> str:
    """Returns whether every value of the ticket's change lies above (or below) every seed-to-seed one, in words."""
    if min(values) > max(baseline):
        return "the ticket changed the attention more than a new seed does, with every seed"
    if max(values) < min(baseline):
        return "the ticket changed the attention less than a new seed does, with every seed"
    return "the ticket's change and a new seed's overlap: no difference holds over seeds"


def sign_over_seeds(differences: list[float]) -> str:
    """Returns whether differences keep one sign over seeds, in words (one seed shows nothing either way)."""
    if len(differences) < 2:
        return "one seed: nothing can be said to hold"
    if all(d > 0 for d in differences):
        return f"higher for the ticket with all {len(differences)} seeds"
    if all(d < 0 for d in differences):
        return f"lower for the ticket with all {len(differences)} seeds"
    return "the sign changes with the seed: nothing holds"


def plot_attention_study(study: dict, output: Path, name: str) -> None:
    """Writes attention_change_<name>.png/.svg, the Jensen-Shannon divergence per head of dense and ticket with each
    seed and of two dense seeds; with masked-language modelling attention_to_targets_<name>.png/.svg too."""
    seeds = study["seeds"]
    grids = {f"dense vs ticket, seed {s}": study["js"][f"dense {s}|ticket {s}"] for s in seeds}
    grids.update({f"dense, seed {a} vs {b}": study["js"][f"dense {a}|dense {b}"] for a, b in zip(seeds, seeds[1:])})
    plot_head_measure(grids, output / f"attention_change_{name}", "Jensen-Shannon divergence, bits")
    if "target_mass" in study:
        plot_head_measure(study["target_mass"], output / f"attention_to_targets_{name}",
                          "attention on the positions to predict")


def example_maps(models: dict, ticket: Ticket, max_tokens: int = 24) -> tuple[list[str], dict]:
    """Returns (its tokens, {model: (nh, T, T) per layer}) of the run's first dev example of at most `max_tokens`
    tokens (else its shortest), the attention each model gives it."""
    run = ticket.run
    dev = run.data[1]
    short = [f for f in dev.features if len(f["input_ids"]) <= max_tokens]
    feature = short[0] if short else min(dev.features, key=lambda f: len(f["input_ids"]))
    device = next(next(iter(models.values())).parameters()).device
    batch = prepare_batch(collate([feature], getattr(dev, "pad_id", 0)), run.task, dev, device, masking_seed=0)
    vocabulary = load_tokenizer(run.checkpoint).backend
    tokens = [vocabulary.id_to_token(int(i)) for i in batch["input_ids"][0]]
    return tokens, {label: [m[0] for m in attention_maps(model, batch)] for label, model in models.items()}
