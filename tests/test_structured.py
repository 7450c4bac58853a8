"""Structured pruning: a unit's rows and columns, importance, exact unit counts, the smaller model equal to the masked
one (padded and packed, outputs and gradients), checkpoints read by minilth and transformers, IMP and controls."""
import json
import shutil

import pytest
import torch
import transformers
from transformers.pytorch_utils import prune_linear_layer

from minilth.checkpoints import load_mask
from minilth.lottery.baselines import run_controls
from minilth.find_ticket import main as find_ticket_main
from minilth.model import BertConfig, build_model
from minilth.prune import Mask, MaskError, prunable_names, snapshot
from minilth.config import TicketConfig
from minilth.data import get_task
from minilth.structured import (Units, gradient_importance, magnitude_importance, prune_units, random_structured_mask,
                                rank_agreement, shrink, structured_prune)
from minilth.checkpoints.pretrained import from_pretrained, save_pretrained

TOL = 1e-5
# 3 layers, 4 heads of d = 4, 10 neurons per layer
SMALL = dict(vocab_size=60, hidden_size=16, num_hidden_layers=3, num_attention_heads=4, intermediate_size=10,
             max_position_embeddings=32)
NUM_HEADS, HEAD_SIZE = 4, 4


def small_model(head: str = "classification", seed: int = 0, **config):
    torch.manual_seed(seed)
    kwargs = {"num_labels": 3} if head == "classification" else {}
    return build_model(BertConfig(**{**SMALL, **config}), head=head, **kwargs).eval()


def dense_mask(model) -> Mask:
    return Mask.dense(model, prunable_names(model))


def padded_batch(seed: int = 0) -> dict:
    """Five sequences of lengths 12, 3, 9, 7, 12: padded, so the default path packs them."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([12, 3, 9, 7, 12])
    attention_mask = (torch.arange(12)[None] < lengths[:, None]).long()  # (B, T)
    input_ids = torch.randint(5, SMALL["vocab_size"], (5, 12), generator=generator) * attention_mask
    return dict(input_ids=input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 1, 2, 0, 1]))


# --- a unit's rows and columns -------------------------------------------------------------------


def test_a_head_and_a_neuron_expand_to_exactly_their_rows_and_columns():
    model = small_model()
    units = Units.of_mask(dense_mask(model), NUM_HEADS)
    assert units.heads.shape == (3, 4) and units.neurons.shape == (3, 10) and units.heads.all()
    units.heads[1, 2] = False  # layer 1, head 2: rows 8..11 of Q, K, V and columns 8..11 of the attention output
    units.neurons[0, [3, 7]] = False  # layer 0, neurons 3 and 7: rows of intermediate, columns of output
    mask = units.expand(dense_mask(model))
    layer = "bert.encoder.layer.{}.{}.weight"
    for role in ("attention.self.query", "attention.self.key", "attention.self.value"):
        flag = mask[layer.format(1, role)]  # (16, 16)
        assert not flag[8:12].any() and flag[:8].all() and flag[12:].all()
    output = mask[layer.format(1, "attention.output.dense")]  # (16, 16)
    assert not output[:, 8:12].any() and output[:, :8].all() and output[:, 12:].all()
    intermediate, down = mask[layer.format(0, "intermediate.dense")], mask[layer.format(0, "output.dense")]
    assert (~intermediate).nonzero()[:, 0].unique().tolist() == [3, 7] and (~intermediate[[3, 7]]).all()
    assert (~down).nonzero()[:, 1].unique().tolist() == [3, 7] and (~down[:, [3, 7]]).all()
    assert mask.num_pruned == 4 * HEAD_SIZE * 16 + 2 * 2 * 16  # one head: 4 d H weights; a neuron: 2 H
    assert mask["bert.pooler.dense.weight"].all()
    back = Units.of_mask(mask, NUM_HEADS)
    assert torch.equal(back.heads, units.heads) and torch.equal(back.neurons, units.neurons)
    assert back.pruned_heads() == {1: [2]} and back.intermediate_sizes() == [8, 10, 10]


def test_a_mask_that_is_not_structured_is_refused_in_one_line():
    model = small_model()
    partly = dense_mask(model)
    partly["bert.encoder.layer.2.attention.self.key.weight"][5, 0] = False
    with pytest.raises(MaskError, match="layer 2 head 1 is partly pruned in bert.encoder.layer.2.attention.self.key"):
        Units.of_mask(partly, NUM_HEADS)
    disagreeing = dense_mask(model)
    disagreeing["bert.encoder.layer.0.attention.self.query.weight"][4:8] = False  # head 1's rows, in Q alone
    with pytest.raises(MaskError, match="layer 0 head 1 is pruned in one of .*query.weight and .*key.weight"):
        Units.of_mask(disagreeing, NUM_HEADS)
    pooler = dense_mask(model)
    pooler["bert.pooler.dense.weight"][0, 0] = False
    with pytest.raises(MaskError, match="pooler.dense.weight is partly pruned"):
        structured_prune(model, pooler, 0.5)


# --- importance ----------------------------------------------------------------------------------


def test_magnitude_importance_is_the_l2_norm_of_all_a_units_weights():
    model = small_model()
    state = {name: torch.zeros_like(tensor) for name, tensor in model.state_dict().items()}
    layer = "bert.encoder.layer.1.{}.weight"
    state[layer.format("attention.self.value")][1 * HEAD_SIZE + 2, 0] = 3.0  # head 1: a value row ...
    state[layer.format("attention.output.dense")][5, 1 * HEAD_SIZE + 3] = 4.0  # ... and an output column
    state[layer.format("intermediate.dense")][6] = 1.0  # neuron 6: its row (16 ones) ...
    state[layer.format("output.dense")][:, 6] = -1.0  # ... and its column (16 minus ones)
    scores = magnitude_importance(state, dense_mask(model), NUM_HEADS)
    expected_heads = torch.zeros(3, 4)
    expected_heads[1, 1] = 5.0
    expected_neurons = torch.zeros(3, 10)
    expected_neurons[1, 6] = 32 ** 0.5
    assert torch.equal(scores["heads"], expected_heads) and torch.allclose(scores["neurons"], expected_neurons)
    # pruning keeps exactly the units that carry weight
    mask = structured_prune(state, dense_mask(model), {"heads": 11, "neurons": 29}, num_heads=NUM_HEADS)
    units = Units.of_mask(mask, NUM_HEADS)
    assert units.heads.nonzero().tolist() == [[1, 1]] and units.neurons.nonzero().tolist() == [[1, 6]]


def test_gradient_importance_is_the_derivative_of_the_loss_by_each_units_gate():
    """|dLoss/dgate| against finite differences: gating a head scales its value rows and bias, gating a neuron its
    output column; then each layer's scores divided by their L2 norm. A pruned head's importance is 0."""
    model = small_model(hidden_dropout_prob=0.1).double()  # eval mode: no dropout
    mask = dense_mask(model)
    mask["bert.encoder.layer.0.attention.self.value.weight"][:HEAD_SIZE] = False  # head 0 of layer 0 ...
    mask["bert.encoder.layer.0.attention.output.dense.weight"][:, :HEAD_SIZE] = False  # ... pruned
    mask.apply_to(model)
    batch = padded_batch()
    scores = gradient_importance(model, [batch, batch])
    params = dict(model.named_parameters())

    def loss_with_scaled(tensors: list[tuple[str, tuple]], factor: float) -> float:
        saved = [params[name].detach().clone() for name, _ in tensors]
        with torch.no_grad():
            for name, where in tensors:
                params[name][where] *= factor
            loss = model(**batch).loss.item()
            for (name, _), value in zip(tensors, saved):
                params[name].copy_(value)
        return loss

    eps, raw = 1e-6, {"heads": torch.zeros(3, 4, dtype=torch.float64), "neurons": torch.zeros(3, 10, dtype=torch.float64)}
    for layer in range(3):
        prefix = f"bert.encoder.layer.{layer}."
        for head in range(4):
            rows = slice(head * HEAD_SIZE, (head + 1) * HEAD_SIZE)
            scaled = [(prefix + "attention.self.value.weight", (rows,)), (prefix + "attention.self.value.bias", (rows,))]
            raw["heads"][layer, head] = (loss_with_scaled(scaled, 1 + eps) - loss_with_scaled(scaled, 1 - eps)) / eps
        for neuron in range(10):
            scaled = [(prefix + "output.dense.weight", (slice(None), neuron))]
            raw["neurons"][layer, neuron] = (loss_with_scaled(scaled, 1 + eps) - loss_with_scaled(scaled, 1 - eps)) / eps
    for kind, values in raw.items():  # two identical batches: twice one batch's |derivative|
        expected = values.abs() / values.abs().norm(dim=1, keepdim=True)
        assert (scores[kind].double() - expected).abs().max() < 1e-4, kind
    assert scores["heads"][0, 0] == 0 and scores["heads"][0, 1:].min() > 0


# --- exact counts --------------------------------------------------------------------------------


def test_structured_pruning_removes_exact_counts_of_the_least_important_units_over_the_whole_model():
    model = small_model()
    scores = magnitude_importance(model, dense_mask(model))
    half = structured_prune(model, dense_mask(model), 0.5)  # 6 of 12 heads, 15 of 30 neurons, model-global
    units = Units.of_mask(half, NUM_HEADS)
    assert (units.num_pruned("heads"), units.num_pruned("neurons")) == (6, 15)
    for kind in ("heads", "neurons"):
        kept = units[kind]
        assert scores[kind][~kept].max() < scores[kind][kept].min()
    assert len(set(units.heads.sum(1).tolist())) > 1  # ranked over the model, not per layer: layers differ
    more = structured_prune(model, half, 0.7)  # round(0.7 x 12) = 8 heads, round(0.7 x 30) = 21 neurons
    deeper = Units.of_mask(more, NUM_HEADS)
    assert (deeper.num_pruned("heads"), deeper.num_pruned("neurons")) == (8, 21)
    assert not (deeper.heads & ~units.heads).any() and not (deeper.neurons & ~units.neurons).any()  # nested
    heads_only = Units.of_mask(structured_prune(model, half, 0.7, kinds=("heads",)), NUM_HEADS)
    assert heads_only.num_pruned("heads") == 8 and torch.equal(heads_only.neurons, units.neurons)
    # the weights removed, for comparing with unstructured tickets: 6 heads x 4dH + 15 neurons x 2H, of the set
    assert half.num_pruned == 6 * 4 * HEAD_SIZE * 16 + 15 * 2 * 16 and half.num_total == 3 * (4 * 256 + 2 * 160) + 256
    with pytest.raises(MaskError, match="pruned units cannot come back"):
        structured_prune(model, more, 0.5)


def test_per_layer_structured_pruning_removes_the_same_share_of_every_layer_least_important_first():
    model = small_model()
    scores = magnitude_importance(model, dense_mask(model))
    half = structured_prune(model, dense_mask(model), 0.5, per_layer=True)  # 2 of 4 heads, 5 of 10 neurons per layer
    units = Units.of_mask(half, NUM_HEADS)
    assert units.heads.sum(1).tolist() == [2, 2, 2] and units.neurons.sum(1).tolist() == [5, 5, 5]
    for kind in ("heads", "neurons"):
        for layer_scores, kept in zip(scores[kind], units[kind]):
            assert layer_scores[~kept].max() < layer_scores[kept].min()
    assert half != structured_prune(model, dense_mask(model), 0.5)  # the model-wide ranking differs on this model
    more = Units.of_mask(structured_prune(model, half, 0.7, per_layer=True), NUM_HEADS)  # round(2.8), round(7)
    assert more.heads.sum(1).tolist() == [1, 1, 1] and more.neurons.sum(1).tolist() == [3, 3, 3]
    assert not (more.heads & ~units.heads).any() and not (more.neurons & ~units.neurons).any()  # nested
    counts = Units.of_mask(structured_prune(model, dense_mask(model), {"heads": 6, "neurons": 15}, per_layer=True),
                           NUM_HEADS)  # counts, as the controls give them: spread as the same share per layer
    assert torch.equal(counts.heads, units.heads) and torch.equal(counts.neurons, units.neurons)
    lopsided = Units.of_mask(dense_mask(model), NUM_HEADS)
    lopsided.heads[0, :3] = False  # layer 0 already lost 3 of its 4 heads
    with pytest.raises(MaskError, match="layer 0 already prunes 3 heads, more than the 2"):
        structured_prune(model, lopsided.expand(dense_mask(model)), 0.5, per_layer=True)


def test_random_structured_pruning_removes_as_many_units_anywhere_or_per_layer():
    model = small_model()
    imp = structured_prune(model, dense_mask(model), 0.5)
    target = Units.of_mask(imp, NUM_HEADS)
    anywhere = random_structured_mask(imp, NUM_HEADS, seed=0)
    assert anywhere == random_structured_mask(imp, NUM_HEADS, seed=0) != random_structured_mask(imp, NUM_HEADS, 1)
    units = Units.of_mask(anywhere, NUM_HEADS)
    assert (units.num_pruned("heads"), units.num_pruned("neurons")) == (6, 15) and anywhere != imp
    assert anywhere.names() == imp.names() and anywhere.num_pruned == imp.num_pruned
    per_layer = Units.of_mask(random_structured_mask(imp, NUM_HEADS, seed=0, layerwise=True), NUM_HEADS)
    for kind in ("heads", "neurons"):
        assert per_layer[kind].sum(1).tolist() == target[kind].sum(1).tolist()
    assert not torch.equal(per_layer.neurons, target.neurons)


# --- the smaller model ---------------------------------------------------------------------------


def pruned_model_and_mask(head: str = "classification", **config):
    """A small model masked to lose heads and neurons, layer 0 all of its heads and layer 2 all of its neurons."""
    model = small_model(head, **config)
    units = Units.of_mask(dense_mask(model), NUM_HEADS)
    units.heads[0] = False
    units.heads[1, [0, 3]] = False
    units.neurons[1, [2, 3, 5]] = False
    units.neurons[2] = False
    mask = units.expand(dense_mask(model))
    mask.apply_to(model)
    return model, mask


@pytest.mark.parametrize("execution", ["unpadded", "padded", "textbook"])
def test_the_smaller_model_computes_what_the_masked_model_does(execution):
    masked, mask = pruned_model_and_mask(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                         execution=execution)
    small = shrink(masked, mask)
    assert small.config.pruned_heads == {0: [0, 1, 2, 3], 1: [0, 3]} and small.config.intermediate_sizes == [10, 7, 0]
    assert [layer.attention.self.query.out_features for layer in small.bert.encoder.layer] == [0, 8, 16]
    assert sum(p.numel() for p in masked.parameters()) - sum(p.numel() for p in small.parameters()) == \
        mask.num_pruned + 6 * HEAD_SIZE * 3 + 13  # the weights and the removed units' own biases
    batch = padded_batch()
    with torch.no_grad():
        assert (small(**batch).logits - masked(**batch).logits).abs().max() < TOL
    # training shapes: every token through the layers, gradients back to every kept weight
    masked.train(), small.train()
    small_loss, masked_loss = small(**batch).loss, masked(**batch).loss
    assert abs(small_loss.item() - masked_loss.item()) < TOL
    small_loss.backward(), masked_loss.backward()
    mask_of = dict(mask.items())
    small_params = dict(small.named_parameters())
    for name, param in masked.named_parameters():
        grad = param.grad if name not in mask_of else param.grad[mask_of[name]]  # kept weights only
        small_grad = small_params[name].grad
        if name in mask_of or small_grad.shape == grad.shape:
            torch.testing.assert_close(small_grad.flatten(), grad.flatten(), atol=TOL, rtol=0, msg=name)  # empty ok


def test_the_smaller_model_saves_and_reloads_as_a_checkpoint(tmp_path, tiny_checkpoint):
    masked, mask = pruned_model_and_mask()
    small = shrink(masked, mask)
    folder = save_pretrained(small, tmp_path / "small", tokenizer_from=tiny_checkpoint)
    stored = json.loads((folder / "config.json").read_text())
    assert stored["pruned_heads"] == {"0": [0, 1, 2, 3], "1": [0, 3]} and stored["intermediate_sizes"] == [10, 7, 0]
    assert (folder / "vocab.txt").is_file()
    loaded = from_pretrained(folder, head="classification", num_labels=3)
    assert not loaded.load_report.missing and not loaded.load_report.unexpected
    batch = padded_batch(seed=1)
    with torch.no_grad():
        assert (loaded(**batch).logits - masked(**batch).logits).abs().max() < TOL


def test_a_model_without_some_heads_loads_in_transformers_with_its_pruned_heads(tmp_path):
    """transformers 5 dropped from_pretrained's head pruning (4.x applies config.pruned_heads itself, and loads the
    folder as it is); here its own prune_linear_layer removes config.json's pruned_heads, as 4.x's prune_heads did."""
    model = small_model("base")
    units = Units.of_mask(dense_mask(model), NUM_HEADS)
    units.heads[0, [1, 2]] = False
    units.heads[2, 3] = False
    mask = units.expand(dense_mask(model))
    mask.apply_to(model)
    folder = save_pretrained(shrink(model, mask), tmp_path / "heads")
    config = transformers.BertConfig.from_pretrained(folder)
    assert {int(layer): heads for layer, heads in config.pruned_heads.items()} == {0: [1, 2], 2: [3]}
    assert config.intermediate_sizes is None  # only heads removed: a plain transformers BERT config
    theirs = transformers.BertModel(config, add_pooling_layer=True).eval()
    for layer, heads in config.pruned_heads.items():
        kept = torch.tensor([i for i in range(config.num_hidden_layers and NUM_HEADS * HEAD_SIZE)
                             if i // HEAD_SIZE not in heads])
        attention = theirs.encoder.layer[int(layer)].attention
        for name in ("query", "key", "value"):
            setattr(attention.self, name, prune_linear_layer(getattr(attention.self, name), kept))
        attention.output.dense = prune_linear_layer(attention.output.dense, kept, dim=1)
    theirs.load_state_dict(torch.load(folder / "pytorch_model.bin", weights_only=True))
    batch = padded_batch(seed=2)
    inputs = {key: batch[key] for key in ("input_ids", "attention_mask")}
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        expected, _ = model(**inputs)
        assert (theirs(**inputs).last_hidden_state - expected)[real].abs().max() < TOL


def test_shrink_refuses_a_model_already_shrunk():
    masked, mask = pruned_model_and_mask()
    with pytest.raises(MaskError, match="already lost heads or neurons"):
        shrink(shrink(masked, mask), mask)


# --- how steady a ranking is ---------------------------------------------------------------------


def test_importance_over_other_batches_ranks_units_apart_and_over_the_whole_set_ranks_them_alike():
    """Two gradient passes over 2 batches each rank the units differently, and rank_agreement says how much; over
    all the batches, in another order or in bf16, the ranking is the same, and so is the per-layer mask."""
    model = small_model()
    data = [padded_batch(seed) for seed in range(12)]
    few, others = gradient_importance(model, data[:2]), gradient_importance(model, data[2:4])
    apart = rank_agreement(few, others)
    assert set(apart) == {"heads", "neurons"} and all(-1 <= value < 0.9 for value in apart.values()), apart
    assert rank_agreement(few, few) == pytest.approx({"heads": 1.0, "neurons": 1.0})
    with_pruned = [{kind: torch.cat([score, torch.zeros_like(score)], dim=1) for kind, score in scores.items()}
                   for scores in (few, others)]  # units pruned before score 0 in both: left out, not agreeing
    assert rank_agreement(*with_pruned) == pytest.approx(apart)
    whole = gradient_importance(model, data)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_bf16 = gradient_importance(model, data)
    dense = dense_mask(model)
    for other in (gradient_importance(model, data[::-1]), in_bf16):
        assert rank_agreement(whole, other) == pytest.approx({"heads": 1.0, "neurons": 1.0}, abs=1e-9)
        assert (structured_prune(model, dense, 0.5, importance=other, per_layer=True)
                == structured_prune(model, dense, 0.5, importance=whole, per_layer=True))


def test_a_mask_ranked_on_every_seed_averages_the_models_scores():
    """--rank-on every_seed: the next mask comes from the round's models' scores averaged; first_seed (the default)
    ranks on the first model alone, as unstructured IMP prunes."""
    models = [small_model(seed=seed) for seed in (0, 1)]
    mask = dense_mask(models[0])
    ranked = {}
    for rank_on in ("first_seed", "every_seed"):
        settings = TicketConfig(task="stsb", structure="heads_and_neurons", rank_within="layer", rank_on=rank_on)
        ranked[rank_on] = prune_units(settings, get_task("stsb"), None, models, mask, 0.5)
    scores = [magnitude_importance(model, mask) for model in models]
    averaged = {kind: (scores[0][kind] + scores[1][kind]) / 2 for kind in scores[0]}
    assert ranked["first_seed"] == structured_prune(models[0], mask, 0.5, per_layer=True)
    assert ranked["every_seed"] == structured_prune(models[0], mask, 0.5, importance=averaged, per_layer=True)
    assert ranked["every_seed"] != ranked["first_seed"]


# --- structured IMP, its controls and its command line -------------------------------------------


def structured_args(checkpoint, glue_dir, output, *extra):
    """A tiny structured run on the STS-B samples: the tiny checkpoint has 2 layers of 4 heads and 64 neurons."""
    return ["--task", "stsb", "--model", str(checkpoint), "--data-dir", str(glue_dir), "--output", str(output),
            "--structure", "heads_and_neurons", "--target-sparsity", "0.5", "--rate", "0.25", "--keep-pooler",
            "--max-train-examples", "16", "--max-eval-examples", "16", "--batch-size", "8", "--epochs", "1",
            "--device", "cpu", "--quiet", *extra]


def round_masks(output) -> list[Mask]:
    summary = json.loads((output / "summary.json").read_text())
    return [load_mask(output / "rounds" / f"round_{i:02d}" / "mask.pt") for i in range(len(summary["rounds"]))]


def test_a_structured_ticket_prunes_exact_counts_of_heads_and_neurons_each_round_and_resumes(
        tiny_checkpoint, glue_dir, tmp_path, capsys):
    output = tmp_path / "run"
    assert find_ticket_main(structured_args(tiny_checkpoint, glue_dir, output)) == 0
    out = capsys.readouterr().out
    assert "units removed" in out and "weights removed" in out and "of the heads and of the neurons" in out
    summary, masks = json.loads((output / "summary.json").read_text()), round_masks(output)
    assert [r["sparsity"] for r in summary["rounds"]] == [0.0, 0.25, 0.5] and summary["structure"] == "heads_and_neurons"
    for mask, sparsity in zip(masks, [0.0, 0.25, 0.5]):
        units = Units.of_mask(mask, 4)  # 8 heads and 128 neurons in all
        assert (units.num_pruned("heads"), units.num_pruned("neurons")) == (round(sparsity * 8), round(sparsity * 128))
        assert "bert.pooler.dense.weight" not in mask.names()
        # heads (4 d H = 4 x 8 x 32) and neurons (2 H) alike: the fraction of the prunable weights is the sparsity
        assert mask.sparsity == pytest.approx(sparsity, abs=1e-9)
    for earlier, later in zip(masks, masks[1:]):
        assert all(not (kept & ~earlier[name]).any() for name, kept in later.items()), "a pruned unit came back"
    assert [r["actual_sparsity"] for r in summary["rounds"]] == [m.sparsity for m in masks]

    interrupted = tmp_path / "interrupted"  # as if killed while training round 2
    shutil.copytree(output, interrupted)
    (interrupted / "rounds" / "round_02" / "metrics.json").unlink()
    assert find_ticket_main(structured_args(tiny_checkpoint, glue_dir, interrupted)) == 0
    strip = lambda s: [{k: v for k, v in r.items() if k != "seconds"} for r in s["rounds"]]  # noqa: E731
    assert strip(json.loads((interrupted / "summary.json").read_text())) == strip(summary)
    assert round_masks(interrupted) == masks


def test_structured_controls_prune_as_many_units_as_the_structured_ticket(tiny_checkpoint, glue_dir, tmp_path, capsys,
                                                                          monkeypatch):
    """The classroom preset with --structure: IMP, then random structured pruning at 50%, Table 2, in its own default
    folder; the other controls of a structured run (gradient importance) prune whole units too, as many of each kind
    as IMP."""
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "runs" / "classroom_heads_and_neurons"  # not runs/classroom, the unstructured run's
    tiny = structured_args(tiny_checkpoint, glue_dir, "-", "--seeds", "0", "1", "--importance", "gradient",
                           "--rank-on", "every_seed", "--importance-batches", "0")
    tiny = [arg for arg in tiny if arg not in ("--task", "stsb", "--target-sparsity", "0.5", "--rate", "0.25",
                                               "--output", "-")]
    assert find_ticket_main(["--preset", "classroom", *tiny, "--controls", "random_pruning"]) == 0
    out = capsys.readouterr().out
    assert "Random pruning" in out and "IMP minus random pruning at 50%" in out and "units removed" in out
    assert "the next masks are ranked on" not in out  # every seed's model, every training batch: no caveat
    imp = round_masks(output)[-1]
    target = Units.of_mask(imp, 4)
    assert (target.num_pruned("heads"), target.num_pruned("neurons")) == (4, 64)
    results = run_controls(output, 0.5, ["random_pruning", "random_reinit", "standard_pruning", "oneshot"], seeds=[0],
                           progress=False, echo=None)  # random pruning: already done by the command above
    folder = output / "controls" / "sparsity_0.50"
    for name, (result,) in results.items():
        mask = load_mask(folder / name / "seed_0.mask.pt")
        units = Units.of_mask(mask, 4)  # structured, or it raises
        assert (units.num_pruned("heads"), units.num_pruned("neurons")) == (4, 64), name
        assert result["sparsity"] == imp.sparsity and "pearson" in result["metrics"]
    assert load_mask(folder / "random_pruning" / "seed_0.mask.pt") != imp
    assert load_mask(folder / "random_reinit" / "seed_0.mask.pt") == imp
    assert len(results["standard_pruning"][0]["rounds"]) == 3  # dense, 25%, 50%: IMP's schedule in units


def test_a_per_layer_ticket_and_its_one_shot_control_prune_the_same_share_of_every_layer(
        tiny_checkpoint, glue_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [arg for arg in structured_args(tiny_checkpoint, glue_dir, "-", "--rank-within", "layer") if arg != "-"]
    args.remove("--output")
    assert find_ticket_main(args) == 0
    out = capsys.readouterr().out
    assert "ranked by magnitude within each layer" in out
    assert ("the next masks are ranked on one trained model (the first seed's): another seed, batch order or CPU "
            "ranks other units") in out and "--rank-on every_seed ranks them more steadily" in out
    output = tmp_path / "runs" / "stsb_heads_and_neurons_per_layer"  # its own default folder
    for mask, sparsity in zip(round_masks(output), [0.0, 0.25, 0.5]):
        units = Units.of_mask(mask, 4)  # 2 layers of 4 heads and 64 neurons
        assert units.heads.sum(1).tolist() == [4 - round(sparsity * 4)] * 2
        assert units.neurons.sum(1).tolist() == [64 - round(sparsity * 64)] * 2
    (result,) = run_controls(output, 0.5, ["oneshot"], seeds=[0], progress=False, echo=None)["oneshot"]
    oneshot = Units.of_mask(load_mask(output / "controls" / "sparsity_0.50" / "oneshot" / "seed_0.mask.pt"), 4)
    assert oneshot.heads.sum(1).tolist() == [2, 2] and oneshot.neurons.sum(1).tolist() == [32, 32]
    assert "pearson" in result["metrics"]


def test_structured_flags_that_contradict_each_other_are_one_line(tiny_checkpoint, glue_dir, tmp_path, capsys):
    args = structured_args(tiny_checkpoint, glue_dir, tmp_path / "a")
    without_structure = [arg for arg in args if arg not in ("--structure", "heads_and_neurons")]
    for extra, message in [(["--importance", "gradient"], "--importance gradient ranks heads and neurons: add "
                                                          "--structure heads_and_neurons"),
                           (["--rank-within", "layer"], "--rank-within layer ranks heads and neurons: add "
                                                        "--structure heads_and_neurons"),
                           (["--rank-on", "every_seed"], "--rank-on every_seed ranks heads and neurons: add "
                                                         "--structure heads_and_neurons"),
                           (["--include-embeddings"], "structured pruning removes heads and neurons, never embeddings"),
                           (["--importance-batches", "4"], "--importance-batches counts the batches of the gradient "
                                                           "ranking: add --importance gradient"),
                           (["--importance", "gradient", "--importance-batches", "-1"],
                            "--importance-batches must be a whole number of batches from 0 (all of them) to 1,000,000, not -1")]:
        with_structure = "--include-embeddings" in extra or "--importance-batches" in extra
        assert find_ticket_main((args if with_structure else without_structure) + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "a").exists()
    with pytest.raises(SystemExit) as exit_info:
        find_ticket_main(args + ["--structure", "blocks"])
    assert exit_info.value.code == 2 and "heads_and_neurons" in capsys.readouterr().err
