"""How much a structured ticket depends on the draw of its mask: per-layer gradient ranking, MiniLM, STS-B.

The classroom structured run ranks the next mask on ONE trained model (the first seed's) with gradients from
the first 8 training batches. A different machine (bf16 rounding), seed or batch order gives another model or
other batches, so another mask. This script builds the masks at 25% and 50% several such ways, fine-tunes
each with 3 seeds exactly as an IMP round does (rewind to theta_0, the seed's fresh head, the classroom
settings), and compares them with a ranking averaged over the round's 3 trained models and the whole training set.

    MINILTH_DATA_DIR=/path/to/glue python results/structured_draws.py --output runs/structured_draws

Every fine-tuning is written to <output>/results.json as soon as it ends (rerun to resume); trained models
that later masks are ranked on are kept in <output>/models/. Prints the tables of results/README.md.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from minilth.checkpoints import load_mask, resolve_checkpoint, save_mask
from minilth.config import TicketConfig
from minilth.data import get_task
from minilth.data.batches import batches
from minilth.lottery.run_folder import dense_mask, load_task_data
from minilth.prune import rewind, snapshot
from minilth.structured import gradient_importance, importance_batches, rank_agreement, structured_prune
from minilth.train import finetune, model_for_task, prepare_batch

SEEDS = (0, 1, 2)
CONFIG = TicketConfig.preset("classroom", structure="heads_and_neurons", importance="gradient", rank_within="layer")


class Experiment:
    def __init__(self, output: Path):
        self.output = output
        (output / "models").mkdir(parents=True, exist_ok=True)
        self.results_path = output / "results.json"
        self.results = json.loads(self.results_path.read_text()) if self.results_path.exists() else {}
        self.task = get_task(CONFIG.task)
        self.checkpoint = resolve_checkpoint(CONFIG.model)
        self.train, self.dev = load_task_data(CONFIG, self.task, self.checkpoint, progress=False)
        self.theta_0 = {seed: snapshot(model_for_task(self.checkpoint, self.task, seed)) for seed in SEEDS}
        self.full_mask = dense_mask(CONFIG, model_for_task(self.checkpoint, self.task, 0))

    def save(self) -> None:
        temp = self.results_path.with_suffix(".tmp")
        temp.write_text(json.dumps(self.results, indent=1))
        temp.replace(self.results_path)

    def finetuned(self, name: str, mask, seed: int, keep_model: bool = False) -> dict:
        """The metrics of `mask` over theta_0 with `seed`'s head, fine-tuned as an IMP round; cached by name."""
        key = f"{name}|{seed}"
        model_file = self.output / "models" / f"{name}_{seed}.pt"
        if key in self.results and (not keep_model or model_file.exists()):
            return self.results[key]
        model = model_for_task(self.checkpoint, self.task, seed)
        rewind(model, self.theta_0[seed], mask)
        started = time.perf_counter()
        history = finetune(model, self.task, self.train, self.dev, CONFIG, seed=seed, mask=mask, progress=False)
        self.results[key] = {"pearson": history.final["pearson"], "spearman": history.final["spearman"],
                             "sparsity": mask.sparsity, "seconds": round(time.perf_counter() - started, 1)}
        if keep_model:
            torch.save(model.state_dict(), model_file)
        self.save()
        print(f"{key}: pearson {100 * history.final['pearson']:.2f} ({self.results[key]['seconds']} s)", flush=True)
        return self.results[key]

    def model(self, name: str, seed: int):
        model = model_for_task(self.checkpoint, self.task, seed)
        model.load_state_dict(torch.load(self.output / "models" / f"{name}_{seed}.pt", weights_only=True))
        return model

    def batch_draw(self, draw: str) -> list[dict]:
        """The batches an importance pass sums over: "first8", the first 8 in file order (minilth's default);
        "shuffled8", the first 8 of a shuffled order; "all", every training batch."""
        batch_size, cpu = CONFIG.for_task(self.task).batch_size, torch.device("cpu")
        if draw != "shuffled8":
            return importance_batches(self.task, self.train, batch_size, 8 if draw == "first8" else None, cpu)
        order = batches(self.train.features, batch_size, shuffle=True, seed=1, pad_id=self.train.pad_id)
        return [prepare_batch(batch, self.task, self.train, cpu, step) for step, batch in zip(range(8), order)]

    def importance(self, models, draw: str, precision: str = "fp32") -> dict[str, torch.Tensor]:
        """Michel et al.'s scores (normalised per layer), averaged over `models` when there are several."""
        scores = []
        for model in models:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                scores.append(gradient_importance(model, self.batch_draw(draw)))
        return {kind: sum(s[kind] for s in scores) / len(scores) for kind in scores[0]}

    def mask(self, name: str, previous, models, draw: str, sparsity: float, precision: str = "fp32"):
        path = self.output / "models" / f"mask_{name}.pt"
        if path.exists():
            return load_mask(path)
        scores = self.importance(models, draw, precision)
        mask = structured_prune(models[0], previous, sparsity, importance=scores, per_layer=True)
        save_mask(mask, path)
        self.results[f"scores|{name}"] = {kind: score.flatten().tolist() for kind, score in scores.items()}
        self.save()
        return mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("runs/structured_draws"))
    parser.add_argument("--smoke", action="store_true", help="64 training and dev pairs: checks the script, not MiniLM")
    args = parser.parse_args()
    if args.smoke:
        global CONFIG
        CONFIG = TicketConfig(**{**CONFIG.to_dict(), "max_train_examples": 64, "max_eval_examples": 64})
    started = time.perf_counter()
    torch.set_num_threads(2)
    e = Experiment(args.output)

    # Round 0: the dense models, each kept: masks at 25% are ranked on them.
    for seed in SEEDS:
        e.finetuned("dense", e.full_mask, seed, keep_model=True)
    dense = [e.model("dense", seed) for seed in SEEDS]

    # 25%: the default ranking from each seed's model, other batches, bf16, the whole set, and averaged.
    ways_25 = {"default": ([dense[0]], "first8", "fp32"), "seed1": ([dense[1]], "first8", "fp32"),
               "seed2": ([dense[2]], "first8", "fp32"), "batches": ([dense[0]], "shuffled8", "fp32"),
               "bf16": ([dense[0]], "first8", "bf16"), "full": ([dense[0]], "all", "fp32"),
               "averaged": (dense, "all", "fp32")}
    masks_25 = {way: e.mask(f"25_{way}", e.full_mask, models, draw, 0.25, precision)
                for way, (models, draw, precision) in ways_25.items()}
    chains = ("default", "seed1", "seed2", "averaged")  # the 25% masks whose trained models rank a 50% mask
    for way, mask in masks_25.items():
        for seed in SEEDS:
            e.finetuned(f"25_{way}", mask, seed, keep_model=way in chains)

    # 50%: on the default chain every way; on the other chains, the default and the averaged ranking.
    for chain in chains:
        trained = [e.model(f"25_{chain}", seed) for seed in SEEDS]
        ways = {"default": ([trained[0]], "first8", "fp32"), "averaged": (trained, "all", "fp32")}
        if chain == "default":
            ways.update({"seed1": ([trained[1]], "first8", "fp32"), "seed2": ([trained[2]], "first8", "fp32"),
                         "batches": ([trained[0]], "shuffled8", "fp32"), "bf16": ([trained[0]], "first8", "bf16"),
                         "full": ([trained[0]], "all", "fp32")})
        for way, (models, draw, precision) in ways.items():
            mask = e.mask(f"50_{chain}_{way}", masks_25[chain], models, draw, 0.5, precision)
            for seed in SEEDS:
                e.finetuned(f"50_{chain}_{way}", mask, seed)
    report(e)
    print(f"wall time {time.perf_counter() - started:.0f} s")


def stats(values: list[float]) -> str:
    mean, std = statistics.fmean(values), statistics.stdev(values)
    return f"{100 * mean:.2f} ± {100 * std:.2f} [{', '.join(f'{100 * v:.2f}' for v in values)}]"


def report(e: Experiment) -> None:
    pearson = lambda name: [e.results[f"{name}|{seed}"]["pearson"] for seed in SEEDS]  # noqa: E731
    dense = pearson("dense")
    bar = statistics.fmean(dense) - statistics.stdev(dense)
    print(f"dense: {stats(dense)}; a ticket (within one dense std) needs a mean of at least {100 * bar:.2f}")
    names = sorted({key.split("|")[0] for key in e.results if not key.startswith(("scores", "dense"))})
    print("| mask | Pearson, seeds 0, 1, 2 | ticket? | at least dense? |\n|---|---|---|---|")
    for name in names:
        values = pearson(name)
        mean = statistics.fmean(values)
        print(f"| {name} | {stats(values)} | {'yes' if mean >= bar else 'no'} | "
              f"{'yes' if mean >= statistics.fmean(dense) else 'no'} |")
    scores = {key.split("|")[1]: value for key, value in e.results.items() if key.startswith("scores|")}
    print("\nagreement of the units' ranking with the default draw's (Spearman within each layer):")

    def layers(name: str) -> dict[str, torch.Tensor]:  # the stored scores, (layers, units) again
        return {kind: torch.tensor(values).view(6, -1) for kind, values in scores[name].items()}

    for level in ("25", "50_default"):
        for name in sorted(n for n in scores if n.startswith(level + "_") and n != f"{level}_default"):
            agreement = rank_agreement(layers(f"{level}_default"), layers(name))
            print(f"  {name}: neurons {agreement['neurons']:.3f}, heads {agreement['heads']:.3f}")


if __name__ == "__main__":
    main()
