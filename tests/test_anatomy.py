"""Inside a ticket (minilth/anatomy): the overlap of masks against its exact chance value, the sparsity per layer
and matrix, the attention maps against the textbook forward's own, and the command's files."""
import hashlib
import itertools
import json
import math

import pytest
import torch

from minilth.anatomy import (attention_maps, attention_measures, chance_jaccard, entropy_bits, finetuned_model,
                             js_divergence_bits, locate, only_in, overlap, overlap_by_part, overlap_matrix,
                             sparsity_table)
from minilth.checkpoints import from_pretrained, load_tokenizer
from minilth.data import get_task, load_dataset
from minilth.data.batches import collate
from minilth.inside_ticket import main
from minilth.lottery.baselines import random_prune
from minilth.lottery.run_folder import read_run
from minilth.model import BertConfig, build_model
from minilth.prune import Mask, magnitude_prune, prunable_names

from conftest import TINY


def tiny_model(head: str = "classification", execution: str = "unpadded"):
    torch.manual_seed(0)
    return build_model(BertConfig(**TINY, execution=execution), head=head).eval()


def random_mask(model, sparsity: float, seed: int) -> Mask:
    return random_prune(model, Mask.dense(model, prunable_names(model)), sparsity, seed=seed)


# --- overlap ---------------------------------------------------------------------------------------------


def test_the_jaccard_of_a_mask_with_itself_is_1_and_of_disjoint_pruned_sets_0():
    mask = magnitude_prune(tiny_model(), Mask.dense(tiny_model()), 0.4)
    same = overlap(mask, mask)
    assert same["jaccard"] == 1.0 == jaccard(mask, mask) and same["share_of_a"] == 1.0
    assert same["both"] == mask.num_pruned == same["either"]
    assert all(part["jaccard"] == 1.0 for part in overlap_by_part(mask, mask).values())
    assert overlap_matrix({"a": mask, "b": mask})["jaccard"] == [[1.0, 1.0], [1.0, 1.0]]
    first = Mask({"w": torch.tensor([True, False, False, True])})
    second = Mask({"w": torch.tensor([False, True, True, False])})
    assert overlap(first, second)["jaccard"] == 0.0
    assert only_in(first, second) == first  # what the first prunes and the second keeps


def brute_force_chance(blocks) -> float:
    """E[Jaccard] over every pair of pruned sets, block by block: the definition, for tiny blocks."""
    choices = [list(itertools.product(itertools.combinations(range(n), a), itertools.combinations(range(n), b)))
               for n, a, b in blocks]
    a, b = sum(block[1] for block in blocks), sum(block[2] for block in blocks)
    total = 0.0
    for combination in itertools.product(*choices):
        both = sum(len(set(x) & set(y)) for x, y in combination)
        total += both / (a + b - both)
    return total / math.prod(len(c) for c in choices)


@pytest.mark.parametrize("blocks", [[(8, 3, 5)], [(6, 6, 2)], [(5, 2, 3), (4, 1, 2)],
                                    [(4, 1, 3), (3, 0, 2), (5, 4, 4)]])
def test_the_random_overlap_formula_is_the_definition_on_tiny_blocks(blocks):
    assert chance_jaccard(blocks) == pytest.approx(brute_force_chance(blocks), abs=1e-12)


def jaccard(a: Mask, b: Mask) -> float:
    """|A ∩ B| / |A ∪ B| of the pruned sets, by its definition."""
    pruned_a, pruned_b = (torch.cat([~flag.flatten() for flag in mask.flags.values()]) for mask in (a, b))
    return (pruned_a & pruned_b).sum().item() / (pruned_a | pruned_b).sum().item()


@pytest.mark.parametrize("layerwise", [False, True], ids=["global", "per matrix"])
def test_the_random_overlap_formula_matches_a_sampled_estimate(layerwise):
    """Random masks drawn as the random-pruning control draws them (exact counts), globally or with each matrix's
    sparsity of a magnitude mask: their mean Jaccard lies within 4 standard errors of the exact value."""
    model = tiny_model()
    ticket = magnitude_prune(model, Mask.dense(model), 0.6)
    other = magnitude_prune(model, Mask.dense(model), 0.3)
    draw = (lambda like, seed: random_prune(model, Mask.dense(model), layerwise_like=like, seed=seed)) if layerwise \
        else (lambda like, seed: random_prune(model, Mask.dense(model), like.sparsity, seed=seed))
    samples = torch.tensor([jaccard(draw(ticket, 2 * i), draw(other, 2 * i + 1)) for i in range(400)])
    exact = overlap(ticket, other)["chance_per_matrix" if layerwise else "chance"]
    standard_error = samples.std().item() / math.sqrt(len(samples))
    assert abs(samples.mean().item() - exact) < 4 * standard_error, (samples.mean().item(), exact, standard_error)


def test_the_chance_of_bert_base_sized_masks_is_computed_in_seconds_and_agrees_with_its_limit():
    """At 85M weights the Jaccard of two random 90% masks concentrates at its value for the expected counts."""
    n = 85_524_480
    a = b = round(0.9 * n)
    both = a * b / n
    assert chance_jaccard([(n, a, b)]) == pytest.approx(both / (a + b - both), rel=1e-9)


# --- where IMP prunes --------------------------------------------------------------------------------------


def test_each_prunable_matrix_has_its_place():
    assert locate("bert.encoder.layer.3.attention.self.query.weight") == ("layer 3", "Q")
    assert locate("encoder.layer.11.attention.output.dense.weight") == ("layer 11", "attn out")
    assert locate("bert.encoder.layer.0.output.dense.weight") == ("layer 0", "FFN out")
    assert locate("bert.encoder.layer.0.intermediate.dense.weight") == ("layer 0", "FFN in")
    assert locate("bert.pooler.dense.weight") == ("pooler", "pooler")


def test_the_per_layer_sparsity_sums_back_to_the_masks():
    model = tiny_model()
    mask = magnitude_prune(model, Mask.dense(model), 0.37)
    table = sparsity_table(mask)
    assert table["parts"] == ["layer 0", "layer 1", "pooler"]
    assert table["matrices"] == ["Q", "K", "V", "attn out", "FFN in", "FFN out", "pooler"]
    layers = table["layers"].values()
    assert sum(layer["pruned"] for layer in layers) == mask.num_pruned == table["pruned"]
    assert sum(layer["total"] for layer in layers) == mask.num_total
    weighted = sum(layer["sparsity"] * layer["total"] for layer in layers) / mask.num_total
    assert weighted == pytest.approx(mask.sparsity, abs=1e-12) and table["sparsity"] == mask.sparsity
    cells = [cell for row in table["cells"].values() for cell in row.values()]
    assert sorted(cell["pruned"] for cell in cells) == sorted(mask.pruned_count(name) for name in mask.names())
    assert len({cell["sparsity"] for cell in cells}) > 1  # magnitude pruning is not uniform over the matrices


# --- attention ---------------------------------------------------------------------------------------------


def textbook_probabilities(model, batch) -> list[torch.Tensor]:
    """The probabilities model.py's BertSelfAttention.forward computes, read where they enter its dropout."""
    kept = {}
    hooks = [layer.attention.self.dropout.register_forward_hook(
        lambda module, inputs, output, index=index: kept.__setitem__(index, inputs[0]))
        for index, layer in enumerate(model.bert.encoder.layer)]
    model.config.execution = "textbook"
    with torch.no_grad():
        model.bert(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    for hook in hooks:
        hook.remove()
    return [kept[index] for index in range(len(kept))]


@pytest.mark.parametrize("execution", ["unpadded", "padded", "textbook"])
def test_the_attention_maps_of_the_textbook_model_equal_the_fast_executions_on_real_tokens(minilm_path, glue_dir,
                                                                                           execution):
    """The real MiniLM on real STS-B pairs of different lengths, padded in one batch."""
    model = from_pretrained(minilm_path, head="regression").eval()
    dev = load_dataset("stsb", glue_dir, "dev", load_tokenizer(minilm_path), max_examples=6, progress=False)
    batch = collate(dev.features)
    real = batch["attention_mask"].bool()
    assert not real.all()  # some padding, which neither counts
    expected = textbook_probabilities(model, batch)
    model.config.execution = execution
    maps = attention_maps(model, batch)
    assert len(maps) == 6 and maps[0].shape == (6, 12, real.shape[1], real.shape[1])
    for got, want in zip(maps, expected):
        rows = real[:, None, :, None] & real[:, None, None, :]  # a real token attending to a real token
        assert (got - want).abs()[rows.expand_as(got)].max() < 1e-5
        assert torch.allclose(got.sum(-1), real[:, None, :].float().expand(got.shape[:-1]), atol=1e-5)


def test_entropy_and_jensen_shannon_divergence_in_bits():
    uniform, one_hot = torch.full((4,), 0.25), torch.tensor([1.0, 0, 0, 0])
    assert entropy_bits(uniform).item() == pytest.approx(2.0) and entropy_bits(one_hot).item() == 0.0
    assert js_divergence_bits(one_hot, one_hot).item() == 0.0
    assert js_divergence_bits(one_hot, torch.tensor([0, 1.0, 0, 0])).item() == pytest.approx(1.0)
    assert 0 < js_divergence_bits(uniform, one_hot).item() < 1
    # a long sequence's sharp attention leaves float32's smallest subnormal where the other row has 0: still finite
    tiny = torch.tensor([torch.finfo(torch.float32).smallest_normal / 2 ** 23, 1.0])
    assert 0 <= js_divergence_bits(tiny, torch.tensor([0, 1.0])).item() < 1e-30


def test_attention_measures_compare_models_head_by_head(tiny_checkpoint, glue_dir):
    task = get_task("stsb")
    dev = load_dataset(task, glue_dir, "dev", load_tokenizer(tiny_checkpoint), max_examples=10, progress=False)
    model = tiny_model("regression")
    other = tiny_model("regression")
    with torch.no_grad():
        other.bert.encoder.layer[1].attention.self.query.weight.mul_(100.0)  # only layer 1's attention changes
    measures = attention_measures({"a": model, "b": other, "a again": model}, dev, task,
                                  pairs=[("a", "a again"), ("a", "b")], batch_size=4, progress=False)
    assert measures["tokens"] == sum(len(f["input_ids"]) for f in dev.features)
    assert measures["js"]["a|a again"] == [[0.0] * 4, [0.0] * 4]
    assert all(v < 1e-6 for v in measures["js"]["a|b"][0]) and all(v > 1e-4 for v in measures["js"]["a|b"][1])
    assert measures["entropy"]["a"] == measures["entropy"]["a again"]
    assert all(0 < h < math.log2(max(len(f["input_ids"]) for f in dev.features)) for h in measures["entropy"]["a"][0])


def test_the_attention_on_the_positions_to_predict_of_a_masked_language_model(minilm_tokenizer):
    from minilth.data.mlm import load_mlm
    from minilth.train import prepare_batch
    from conftest import FIXTURES

    task = get_task("mlm")
    data = load_mlm(FIXTURES / "wikitext" / "wiki.test.raw", minilm_tokenizer, max_length=32, max_examples=3,
                    progress=False)
    model = tiny_model("mlm")
    measures = attention_measures({"m": model}, data, task, batch_size=3, progress=False)  # one batch, 3 != nh
    batch = prepare_batch(collate(data.features, minilm_tokenizer.pad_id), task, data, torch.device("cpu"), 0)
    target, real = (batch["labels"] != -100).float(), batch["attention_mask"].bool()  # (B, T) each
    for layer, p in enumerate(attention_maps(model, batch)):  # (B, nh, T, T)
        on_targets = torch.einsum("bhij,bj->bhi", p, target)  # each query token's attention on the targets
        by_hand = on_targets.permute(1, 0, 2)[:, real].mean(-1)  # (nh,) mean over the real query tokens
        assert torch.allclose(torch.tensor(measures["target_mass"]["m"][layer], dtype=torch.float64), by_hand.double(),
                              atol=1e-6)
    assert measures["targets"] == target.sum() and measures["tokens"] == real.sum()
    assert measures["target_share"] == measures["targets"] / measures["tokens"]
    assert torch.tensor(measures["target_entropy"]["m"]).shape == (2, 4)


def test_a_rounds_model_fine_tuned_again_is_the_runs_model(tiny_rte_imp_run):
    _, folder = tiny_rte_imp_run
    run = read_run(folder, progress=False)
    for round_ in run.rounds:
        model, metrics = finetuned_model(run, round_, seed=0, progress=False)
        assert metrics == round_.metrics[0]  # on the CPU, bit for bit: the model the round trained
        weights = dict(model.named_parameters())
        assert all(not weights[name][~flag].any() for name, flag in round_.mask.items())  # pruned weights stay 0


# --- the command -------------------------------------------------------------------------------------------


def digests(folder) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def test_the_command_writes_figures_and_numbers_with_the_same_bytes_every_time(tiny_rte_imp_run, tmp_path, capsys):
    _, folder = tiny_rte_imp_run
    mask_file = folder / "rounds" / "round_01" / "mask.pt"
    sources = [f"RTE={folder}", f"ten={mask_file}"]
    assert main([*sources, "--output", str(tmp_path / "a"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "% pruned: RTE, round 2 (20%)" in printed and "RTE & ten" in printed
    assert main([*sources, "--output", str(tmp_path / "b"), "--quiet"]) == 0
    written = digests(tmp_path / "a")
    assert written == digests(tmp_path / "b")
    figures = {"sparsity_rte", "sparsity_ten", "overlap", "overlap_by_layer"}
    assert set(written) == {f"{name}.{suffix}" for name in figures for suffix in ("png", "svg")} | {"anatomy.json"}
    numbers = json.loads((tmp_path / "a" / "anatomy.json").read_text())
    assert numbers["overlap"]["labels"] == ["RTE", "ten", "RTE one-shot", "RTE random"]
    assert [numbers["overlap"]["jaccard"][i][i] for i in range(4)] == [1.0] * 4
    assert list(numbers["sparsity"]["RTE"]) == ["round 1 (10%)", "round 2 (20%)", "random", "one-shot"]
    assert list(numbers["sparsity"]["ten"]) == ["ten"]
    random = numbers["overlap"]["labels"].index("RTE random")
    assert abs(numbers["overlap"]["jaccard"][0][random] - numbers["overlap"]["chance"][0][random]) < 0.05


def test_the_command_with_attention_compares_dense_and_ticket_over_seeds(tiny_rte_imp_run, tmp_path, capsys):
    _, folder = tiny_rte_imp_run
    assert main([str(folder), "--attention", "--seeds", "0", "1", "--attention-examples", "6", "--no-oneshot",
                 "--output", str(tmp_path), "--quiet"]) == 0
    assert "two dense models fine-tuned with different seeds" in capsys.readouterr().out
    study = json.loads((tmp_path / "anatomy.json").read_text())["attention"][folder.name]
    assert set(study["js"]) == {"dense 0|ticket 0", "dense 1|ticket 1", "dense 0|dense 1", "ticket 0|ticket 1"}
    assert study["metrics"]["ticket 0"] == read_run(folder, with_data=False).rounds[-1].metrics[0]
    for name in ("attention_change_", "attention_maps_"):
        assert (tmp_path / f"{name}{folder.name}.png").is_file() and (tmp_path / f"{name}{folder.name}.svg").is_file()


@pytest.mark.parametrize("arguments, message", [
    (["nowhere"], "nowhere does not exist"),
    (["{run}", "--sparsity", "0.7"], "no finished round at sparsity 0.7"),
    (["{run}", "{other_model}"], "different models"),
    (["{run}", "--attention-examples", "0"], "--attention-examples must be a positive"),
    (["{run}", "{run}"], "two sources are named"),
])
def test_bad_input_is_one_line_and_writes_nothing(tiny_rte_imp_run, tmp_path, capsys, arguments, message):
    _, folder = tiny_rte_imp_run
    other = tmp_path / "other.pt"
    from minilth.checkpoints import save_mask
    save_mask(Mask({"bert.pooler.dense.weight": torch.ones(3, 3, dtype=torch.bool)}), other)
    arguments = [a.format(run=folder, other_model=other) for a in arguments]
    assert main([*arguments, "--output", str(tmp_path / "out"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "anatomy.json").exists()


def test_the_command_on_an_mlm_run_measures_the_attention_on_the_positions_to_predict(tiny_checkpoint, tmp_path,
                                                                                    capsys):
    from minilth.config import TicketConfig
    from minilth.ticket import find_ticket
    from test_transfer import write_wikitext

    config = TicketConfig(task="mlm", model=str(tiny_checkpoint), data_dir=str(write_wikitext(tmp_path / "data")),
                          target_sparsity=0.1, max_train_examples=4, max_eval_examples=4, epochs=1, batch_size=4,
                          seeds=[0, 1], device="cpu")
    find_ticket(config, tmp_path / "mlm", progress=False, echo=None)
    assert main([f"MLM={tmp_path / 'mlm'}", "--attention", "--attention-examples", "4", "--no-oneshot", "--output",
                 str(tmp_path / "out"), "--quiet"]) == 0
    assert "attention on the positions to predict" in capsys.readouterr().out
    study = json.loads((tmp_path / "out" / "anatomy.json").read_text())["attention"]["MLM"]
    assert 0 < study["target_share"] < 1 and set(study["target_mass"]) == {"dense 0", "ticket 0", "dense 1", "ticket 1"}
    assert (tmp_path / "out" / "attention_to_targets_mlm.png").is_file()
