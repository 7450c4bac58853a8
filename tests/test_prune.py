"""The IMP module: exact sparsity, parity with torch.nn.utils.prune, zeros staying zero, rewinding, mask files."""
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune
from transformers import BertConfig, BertForSequenceClassification, BertModel

from minilth.errors import MinilthError
from minilth.checkpoints import load_mask, save_mask
from minilth.lottery.baselines import oneshot_prune, random_prune
from minilth.lottery.run_folder import pooler_magnitude_ratio
from minilth.prune import Mask, is_head, magnitude_prune, prunable_names, rewind, snapshot, sparsity_schedule


def tiny_config(layers: int = 2) -> BertConfig:
    return BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=24)


def tiny_bert(layers: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_config(layers))


def set_tie_free_weights(model: nn.Module, names: list[str], seed: int) -> None:
    """Gives the named weights distinct magnitudes (a random permutation of 1..N, random signs), so no ties exist."""
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    total = sum(params[name].numel() for name in names)
    magnitudes = (torch.randperm(total, generator=generator) + 1).float() / total  # exact in float32, all distinct
    signs = torch.randint(0, 2, (total,), generator=generator).float() * 2 - 1
    values = (magnitudes * signs).split([params[name].numel() for name in names])
    with torch.no_grad():
        for name, value in zip(names, values):
            params[name].copy_(value.reshape(params[name].shape))


def counts(levels: list[float], total: int) -> list[int]:
    return [round(level * total) for level in levels]


# ---------------------------------------------------------------------------------------------

def test_prunable_names_are_the_papers_73_matrices_with_and_without_prefix():
    headed = BertForSequenceClassification(tiny_config(layers=12))
    names = prunable_names(headed)
    assert len(names) == 73
    assert names[0] == "bert.encoder.layer.0.attention.self.query.weight"
    assert names[5] == "bert.encoder.layer.0.output.dense.weight"
    assert names[-1] == "bert.pooler.dense.weight"
    assert not any("bias" in n or "LayerNorm" in n or "classifier" in n or "embeddings" in n for n in names)
    bare = prunable_names(BertModel(tiny_config(layers=12)).state_dict())
    assert bare == [n.removeprefix("bert.") for n in names]
    assert len(prunable_names(headed, include_pooler=False)) == 72
    with_embeddings = prunable_names(headed, include_embeddings=True)
    assert len(with_embeddings) == 76 and "bert.embeddings.word_embeddings.weight" in with_embeddings
    with pytest.raises(MinilthError, match="no prunable weights"):
        prunable_names(nn.Linear(3, 3))


@pytest.mark.parametrize("head", ["classification", "regression", "span", "mlm", "pretraining"])
def test_every_task_kind_prunes_the_papers_85_524_480_weights_of_bert_base(head):
    """The reference keeps an unused pooler in its QA and MLM models and prunes it (LT_squad.py:107,
    LT_pretrain.py:164): every row of the paper has one denominator. --keep-pooler leaves 72 matrices."""
    from minilth.model import BertConfig, build_model

    torch.manual_seed(0)
    model = build_model(BertConfig(), head)  # BERT-base's shape; its values do not matter here
    count = lambda names: sum(model.get_parameter(name).numel() for name in names)  # noqa: E731
    assert len(prunable_names(model)) == 73 and count(prunable_names(model)) == 85_524_480
    assert count(prunable_names(model, include_pooler=False)) == 84_934_656


def test_pooler_magnitude_ratio_flags_minilms_untrained_pooler(minilm_path):
    from minilth.checkpoints.pretrained import read_weights

    minilm = read_weights(minilm_path)
    assert pooler_magnitude_ratio(minilm, prunable_names(minilm)) < 0.25  # mean |w| 0.007 against 0.03-0.07
    model = tiny_bert()
    assert 0.5 < pooler_magnitude_ratio(model, prunable_names(model)) < 2  # one initialisation for all
    assert pooler_magnitude_ratio(model, prunable_names(model, include_pooler=False)) is None


def test_is_head():
    assert is_head("classifier.weight") and is_head("cls.predictions.bias")
    assert not is_head("bert.pooler.dense.weight")


@pytest.mark.parametrize("kind", ["original", "remaining"])
def test_iterative_magnitude_pruning_matches_torch_global_unstructured(kind):
    """Every round: weights change (fine-tuning), both prune; the masks must be identical and the count exact."""
    ours = tiny_bert()
    names = prunable_names(ours)
    reference = tiny_bert()  # a second copy that torch.nn.utils.prune will modify
    pairs = [(reference.get_submodule(n.rsplit(".", 1)[0]), "weight") for n in names]
    mask = Mask.dense(ours)
    total = mask.num_total
    levels = sparsity_schedule(0.9, 0.1, kind)
    expected_counts = counts(levels, total)
    previous_count = 0
    for round_index, (level, count) in enumerate(zip(levels, expected_counts)):
        set_tie_free_weights(ours, names, seed=round_index)  # "fine-tuned" weights of this round
        for (module, _), name in zip(pairs, names):
            target = module.weight_orig if hasattr(module, "weight_orig") else module.weight
            with torch.no_grad():
                target.copy_(dict(ours.named_parameters())[name])
        before = {name: flag.clone() for name, flag in mask.items()}
        mask = magnitude_prune(ours, mask, level)
        # torch prunes `amount` of the still-unpruned weights: the integer number of new zeros this round
        # (`module.weight` is only refreshed by a forward pass, so the new weights are passed as the scores)
        scores = {pair: getattr(pair[0], "weight_orig", pair[0].weight) for pair in pairs}
        torch_prune.global_unstructured(pairs, pruning_method=torch_prune.L1Unstructured,
                                        importance_scores=scores, amount=count - previous_count)
        previous_count = count
        for (module, _), name in zip(pairs, names):
            assert torch.equal(mask[name], module.weight_mask.bool()), f"round {round_index} {name}"
            assert not (mask[name] & ~before[name]).any(), "a pruned weight came back"
        assert mask.num_total - mask.num_kept == count
    assert mask.sparsity == pytest.approx(0.9, abs=1 / total)
    assert len(levels) == (9 if kind == "original" else 22)


def test_schedules():
    assert sparsity_schedule(0.9) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert sparsity_schedule(0.95, 0.1)[-2:] == [0.9, 0.95]
    remaining = sparsity_schedule(0.5, 0.2, "remaining")
    assert remaining == [0.2, 0.36, 0.488, 0.5]
    assert sparsity_schedule(0.0) == []
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(MinilthError, match=r"\[0, 1\)"):
            sparsity_schedule(bad)
    with pytest.raises(MinilthError, match="unknown schedule"):
        sparsity_schedule(0.5, kind="cubic")


def test_exact_counts_on_odd_sizes_and_ties_broken_by_position():
    sd = {"encoder.layer.0.attention.self.query.weight": torch.ones(3, 3),
          "encoder.layer.0.intermediate.dense.weight": torch.ones(2, 2)}
    mask = magnitude_prune(sd, Mask.dense(sd), 0.5)  # round(0.5 * 13) = 6 zeros, all weights tie
    assert mask.num_kept == 7
    query = mask["encoder.layer.0.attention.self.query.weight"].flatten()
    assert query.tolist() == [False] * 6 + [True] * 3  # lower positions pruned first
    assert mask["encoder.layer.0.intermediate.dense.weight"].all()


def test_magnitude_prune_bad_input():
    model = tiny_bert()
    mask = magnitude_prune(model, Mask.dense(model), 0.5)
    for bad in (1.0, -0.01, 2):
        with pytest.raises(MinilthError, match=r"\[0, 1\)"):
            magnitude_prune(model, mask, bad)
    with pytest.raises(MinilthError, match="below the mask's current sparsity"):
        magnitude_prune(model, mask, 0.4)
    assert magnitude_prune(model, mask, 0.5) == mask  # same target: nothing changes


def test_oneshot_prune_is_magnitude_prune_of_theta0():
    theta0 = snapshot(tiny_bert(seed=3))
    mask = oneshot_prune(theta0, 0.7)
    assert mask == magnitude_prune(theta0, Mask.dense(theta0), 0.7)
    assert mask.num_total - mask.num_kept == round(0.7 * mask.num_total)
    kept_min = min(theta0[n].abs()[mask[n]].min() for n in mask)
    pruned_max = max(theta0[n].abs()[~mask[n]].max() for n in mask)
    assert pruned_max <= kept_min


def test_rewind_keeps_theta_bit_for_bit_and_zeros_pruned():
    model = tiny_bert(seed=1)
    theta0 = snapshot(model)
    mask = Mask.dense(model)
    for level in sparsity_schedule(0.6):
        with torch.no_grad():  # stand-in for fine-tuning
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        mask = magnitude_prune(model, mask, level)
        rewound = rewind(model, theta0, mask)
        assert "classifier.weight" in rewound
        state = model.state_dict()
        for name, value in theta0.items():
            if name in mask:
                assert torch.equal(state[name][mask[name]], value[mask[name]])
                assert (state[name][~mask[name]] == 0).all()
            else:
                assert torch.equal(state[name], value)
    assert mask.num_total - mask.num_kept == round(0.6 * mask.num_total)
    # keeping the trained head: rewind only the encoder
    with torch.no_grad():
        model.classifier.weight.fill_(7.0)
    rewind(model, theta0, mask, names=[n for n in theta0 if not is_head(n)])
    assert (model.classifier.weight == 7.0).all()
    with pytest.raises(MinilthError, match="shares no names"):
        rewind(model, {"x": torch.zeros(1)}, mask)


def test_bound_mask_keeps_zeros_through_adamw_with_weight_decay():
    model = tiny_bert(seed=2)
    mask = magnitude_prune(model, Mask.dense(model), 0.8)
    mask.apply_to(model)
    keep_zeros = mask.bind(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        optimizer.step()
        keep_zeros()
    params = dict(model.named_parameters())
    for name, flag in mask.items():
        assert (params[name][~flag] == 0).all()
        assert (params[name][flag] != 0).all()  # kept weights still train
    pruned = sum(int((params[n] == 0).sum()) for n in mask)
    assert pruned == mask.num_total - mask.num_kept


def test_random_prune_exact_globally_and_per_tensor():
    model = tiny_bert()
    dense = Mask.dense(model)
    mask = random_prune(model, dense, 0.7, seed=5)
    assert mask.num_total - mask.num_kept == round(0.7 * mask.num_total)
    assert mask == random_prune(model, dense, 0.7, seed=5)
    assert mask != random_prune(model, dense, 0.7, seed=6)
    imp = magnitude_prune(model, dense, 0.6)
    layerwise = random_prune(model, dense, layerwise_like=imp, generator=torch.Generator().manual_seed(0))
    for name in imp:
        assert layerwise.pruned_count(name) == imp.pruned_count(name)
    assert layerwise != imp
    further = random_prune(model, mask, 0.8, seed=1)  # already-pruned stay pruned
    assert not any((further[n] & ~mask[n]).any() for n in mask)
    assert further.num_total - further.num_kept == round(0.8 * mask.num_total)
    with pytest.raises(MinilthError, match="exactly one"):
        random_prune(model, dense, 0.5, layerwise_like=imp)


def test_save_load_round_trip_and_size(tmp_path):
    generator = torch.Generator().manual_seed(0)
    shapes = {f"encoder.layer.{i}.intermediate.dense.weight": (1000, 1001) for i in range(10)}  # 10.01M weights
    mask = Mask({name: torch.rand(shape, generator=generator) > 0.3 for name, shape in shapes.items()})
    path = save_mask(mask, tmp_path / "round_3" / "mask.pt")
    assert load_mask(path) == mask
    assert path.stat().st_size < 1.5e6
    assert [p.name for p in path.parent.iterdir()] == ["mask.pt"]  # no temp file left


def test_mask_that_does_not_fit_and_bad_files(tmp_path):
    model = tiny_bert()
    mask = magnitude_prune(model, Mask.dense(model), 0.5)
    path = save_mask(mask, tmp_path / "mask.pt")
    other = BertForSequenceClassification(BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=3,
                                                     num_attention_heads=2, intermediate_size=32,
                                                     max_position_embeddings=24))
    with pytest.raises(MinilthError, match="mask was made for another model.*shape mismatch"):
        load_mask(path).apply_to(other)
    with pytest.raises(MinilthError, match="mask was made for another model.*missing"):
        load_mask(path).check_fits(BertModel(tiny_config()))  # no 'bert.' prefix
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MinilthError, match="not a readable minilth mask file"):
        load_mask(corrupt)
    foreign = tmp_path / "weights.pt"
    torch.save(model.state_dict(), foreign)
    with pytest.raises(MinilthError, match="weights.pt: format is missing, expected one of minilth-mask; it is not a "
                                           "readable minilth mask file"):
        load_mask(foreign)
    with pytest.raises(MinilthError, match="does not exist"):
        load_mask(tmp_path / "missing.pt")


def test_snapshot_is_a_true_copy_that_training_does_not_move():
    """LT_pretrain.py took theta_0 as model.state_dict() without a copy, so its MLM 'rewinding' restored nothing."""
    from minilth.model import BertConfig, build_model
    from minilth.prune import snapshot

    model = build_model(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
                        "mlm")
    theta_0 = snapshot(model)
    before = {name: tensor.clone() for name, tensor in theta_0.items()}
    live = dict(model.state_dict())
    assert all(theta_0[name].data_ptr() != live[name].data_ptr() for name in live)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)  # what an optimiser step does: in place
    assert all(torch.equal(theta_0[name], before[name]) for name in before)
