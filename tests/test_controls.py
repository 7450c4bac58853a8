"""The controls of a ticket: exact sparsities, re-initialisation, standard pruning without rewinding, resume, CLI."""
import json

import pytest
import torch

import minilth.lottery.baselines as controls
from minilth.checkpoints import load_mask
from minilth.controls import main
from minilth.data.tasks import get_task
from minilth.errors import MinilthError
from minilth.lottery.baselines import (oneshot_mask, random_pruning_mask, reinitialize, run_controls,
                                      standard_pruning)
from minilth.lottery.run_folder import read_run
from minilth.prune import Mask, magnitude_prune, snapshot
from minilth.train import model_for_task


def fresh_model(config, task, seed):
    """theta_0: the pre-trained model with the head drawn from the seed."""
    return model_for_task(config.model, task, seed)


@pytest.fixture(scope="module")
def imp_run(tiny_rte_imp_run):
    """The tiny RTE IMP run with its rounds: (config, folder, rounds at 0, 10% and 20%)."""
    config, output = tiny_rte_imp_run
    return config, output, read_run(output, with_data=False).rounds


@pytest.fixture(scope="module")
def model(imp_run):
    config, _, _ = imp_run
    return fresh_model(config, get_task("rte"), seed=0)


def test_random_pruning_has_the_imp_sparsity_globally_and_per_matrix(imp_run, model):
    imp_mask = imp_run[2][-1].mask
    assert imp_mask.num_pruned > 0
    global_mask = random_pruning_mask(model, imp_mask, seed=0)
    assert global_mask.names() == imp_mask.names()
    assert global_mask.num_pruned == imp_mask.num_pruned
    assert global_mask != imp_mask and global_mask != random_pruning_mask(model, imp_mask, seed=1)
    assert global_mask == random_pruning_mask(model, imp_mask, seed=0)  # reproducible from the seed
    # IMP prunes unevenly across matrices; the global random mask need not match per matrix, the layer-wise one must.
    layerwise = random_pruning_mask(model, imp_mask, seed=0, layerwise=True)
    assert layerwise.num_pruned == imp_mask.num_pruned
    for name in imp_mask:
        assert layerwise.pruned_count(name) == imp_mask.pruned_count(name)
    assert layerwise != imp_mask


def test_oneshot_prunes_the_smallest_pretrained_weights(imp_run, model):
    imp_mask = imp_run[2][-1].mask
    mask = oneshot_mask(model, imp_mask)
    assert mask.num_pruned == imp_mask.num_pruned and mask.names() == imp_mask.names()
    weights = dict(model.named_parameters())
    kept = torch.cat([weights[n].detach().abs().flatten()[mask[n].flatten()] for n in mask])
    pruned = torch.cat([weights[n].detach().abs().flatten()[~mask[n].flatten()] for n in mask])
    assert pruned.max() <= kept.min()
    assert mask != imp_mask  # IMP prunes the fine-tuned weights, not theta_0's


@pytest.mark.parametrize("how", ["shuffle", "fresh"])
def test_reinitialize_changes_every_prunable_matrix_and_nothing_else(imp_run, how):
    config, _, rounds = imp_run
    model = fresh_model(config, get_task("rte"), seed=0)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    names = rounds[-1].mask.names()
    assert "bert.pooler.dense.weight" in names and len(names) == 13  # 2 layers x 6 + the pooler
    assert reinitialize(model, names, how=how, seed=3) == names
    after = model.state_dict()
    for name in before:
        if name in names:
            assert not torch.equal(after[name], before[name]), f"{name} kept its pre-trained values"
            if how == "shuffle":  # the same values in another order
                assert torch.equal(after[name].flatten().sort().values, before[name].flatten().sort().values)
        else:
            assert torch.equal(after[name], before[name]), f"{name} is not prunable but changed"
    if how == "fresh":
        drawn = torch.cat([after[n].flatten() for n in names])
        assert abs(drawn.std().item() - model.config.initializer_range) < 0.002
        assert abs(drawn.mean().item()) < 0.002


def test_reinitialize_rejects_unknown_ways_and_names(model):
    with pytest.raises(MinilthError, match="use 'shuffle' or 'fresh'"):
        reinitialize(model, ["bert.pooler.dense.weight"], how="zeros")
    with pytest.raises(MinilthError, match="no tensor named nope"):
        reinitialize(model, ["nope"])


@pytest.fixture(scope="module")
def standard_run(imp_run):
    """Standard pruning to the IMP run's 20%, recording where each round starts and what it trained."""
    _, output, rounds = imp_run
    run = read_run(output)
    starts, trained = [], []
    real_train = controls.train_subnetwork

    def recording_train(run, model, mask, seed, rewound=True, progress=True):
        starts.append(snapshot(model))
        history = real_train(run, model, mask, seed, rewound, progress)
        trained.append(snapshot(model))
        return history

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(controls, "train_subnetwork", recording_train)
        result = standard_pruning(run, rounds[2].mask, seed=0, progress=False)
    return result, starts, trained, run


def test_standard_pruning_prunes_trained_weights_and_never_rewinds(imp_run, standard_run):
    rounds = imp_run[2]
    (mask, metrics, records), starts, trained, _ = standard_run
    assert [round(r["sparsity"], 2) for r in records] == [0.0, 0.1, 0.2]
    assert mask.num_pruned == rounds[2].mask.num_pruned and set(metrics) == {"acc", "acc_se", "acc_chance"}
    # Round 1 prunes the dense fine-tuned weights exactly as IMP's first round does (same seed, same data) ...
    assert magnitude_prune(trained[0], Mask.dense(trained[0], mask.names()), 0.1) == rounds[1].mask
    # ... and each round starts from the previous round's trained weights (head included), not from theta_0:
    # the same values wherever the new mask keeps a weight.
    theta_0 = snapshot(fresh_model(imp_run[0], get_task("rte"), seed=0))
    assert all(torch.equal(starts[0][name], theta_0[name]) for name in theta_0)
    for start, previous in zip(starts[1:], trained):
        for name in previous:
            kept = start[name] != 0
            assert torch.equal(start[name][kept], previous[name][kept]), name
        assert all(torch.equal(start[name], previous[name]) for name in previous if name not in mask)
    assert mask != rounds[2].mask  # without rewinding, the second pruning sees other weights


def test_standard_pruning_resumes_from_its_checkpoint(imp_run, standard_run, tmp_path, monkeypatch):
    _, _, rounds = imp_run
    whole, _, _, run = standard_run
    calls, real_train = [], controls.train_subnetwork

    def dies_in_round_three(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(controls, "train_subnetwork", dies_in_round_three)
    checkpoint = tmp_path / "partial.pt"
    with pytest.raises(KeyboardInterrupt):
        standard_pruning(run, rounds[2].mask, seed=0, progress=False, checkpoint=checkpoint)
    assert checkpoint.exists()
    resumed = standard_pruning(run, rounds[2].mask, seed=0, progress=False, checkpoint=checkpoint)
    assert len(calls) == 4  # rounds 0 and 1 were not trained again
    assert resumed[0] == whole[0] and resumed[1] == whole[1] and resumed[2] == whole[2]


def test_run_controls_writes_each_result_and_resumes(imp_run, tmp_path, monkeypatch):
    config, imp_dir, rounds = imp_run
    output = tmp_path / "controls"
    names = ("random_pruning", "random_pruning_layerwise", "random_reinit", "random_reinit_fresh",
             "standard_pruning", "oneshot")
    results = run_controls(imp_dir, sparsity=0.1, controls=names, seeds=[1], output_dir=output,
                           progress=False, echo=None)
    imp_mask = rounds[1].mask
    folder = output / "sparsity_0.10"
    for name in names:
        assert len(results[name]) == 1
        for seed, result in zip([1], results[name]):
            assert result["control"] == name and result["seed"] == seed and 0.0 <= result["metrics"]["acc"] <= 1.0
            mask = load_mask(folder / name / f"seed_{seed}.mask.pt")
            assert mask.num_pruned == imp_mask.num_pruned and result["sparsity"] == imp_mask.sparsity
            assert json.loads((folder / name / f"seed_{seed}.json").read_text()) == result
    assert load_mask(folder / "random_reinit" / "seed_1.mask.pt") == imp_mask
    assert not list(folder.glob("*/.seed_*.partial.pt"))  # finished: no checkpoint left behind

    def no_training(*args, **kwargs):
        raise AssertionError("a finished control was run again")

    monkeypatch.setattr(controls, "train_subnetwork", no_training)
    assert run_controls(imp_dir, 0.1, names, [1], output, progress=False, echo=None) == results


def test_cli_prints_table2_and_resumes(imp_run, tmp_path, capsys):
    _, imp_dir, _ = imp_run
    args = ["--imp-run", str(imp_dir), "--sparsity", "0.1", "--controls", "random_pruning", "oneshot",
            "--output", str(tmp_path / "c"), "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    for label in ("Full model (dense)", "IMP", "Random pruning", "One-shot pruning"):
        assert label in out
    assert "10%" in out and "±" in out
    csv_text = (tmp_path / "c" / "sparsity_0.10" / "table2.csv").read_text()
    assert csv_text.splitlines()[0].startswith("setting,label,sparsity,seeds,acc_mean,acc_std,acc_min,acc_max")
    assert [line.split(",")[0] for line in csv_text.splitlines()[1:]] == ["dense", "imp", "random_pruning", "oneshot"]
    assert (tmp_path / "c" / "sparsity_0.10" / "table2.md").read_text().startswith("| setting |")
    assert main(args) == 0  # everything done: the table again, no training
    assert "0 of 2 runs to do" in capsys.readouterr().out


def test_cli_bad_input_is_one_line(imp_run, tmp_path, capsys):
    _, imp_dir, _ = imp_run
    assert main(["--imp-run", str(tmp_path / "nothing"), "--controls", "random_pruning"]) == 2
    err = capsys.readouterr().err
    assert "not a find_ticket output folder" in err and len(err.strip().splitlines()) == 1
    assert main(["--imp-run", str(imp_dir), "--sparsity", "0.5", "--controls", "oneshot", "--output",
                 str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "no finished round at sparsity 0.5 (it has 0.1, 0.2)" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["--imp-run", str(imp_dir), "--controls", "lucky_guess"])
    assert exit_info.value.code == 2
    with pytest.raises(MinilthError, match="unknown control 'lucky_guess'"):
        run_controls(imp_dir, controls=["lucky_guess"], output_dir=tmp_path, echo=None)


def test_the_imp_curve_is_drawn_with_its_controls_beside_it(imp_run, tmp_path, monkeypatch):
    import minilth.lottery.verdict as verdict

    drawn, real_plot = [], verdict.plot_sparsity_curve
    monkeypatch.setattr(verdict, "plot_sparsity_curve",
                        lambda summary, controls, path, title: drawn.append(controls) or real_plot(summary, controls,
                                                                                                    tmp_path / "c.png",
                                                                                                    title))
    _, imp_dir, rounds = imp_run
    run_controls(imp_dir, 0.2, controls=["random_pruning", "oneshot"], seeds=[3], output_dir=tmp_path / "c",
                 progress=False, echo=None)
    assert set(drawn[-1]) == {"random_pruning", "oneshot"}
    (sparsity, value), = drawn[-1]["random_pruning"]
    assert sparsity == rounds[2].mask.sparsity and 0 <= value <= 1
    assert (tmp_path / "c.png").stat().st_size > 0


def test_cli_without_controls_names_them(imp_run, tmp_path, capsys):
    _, imp_dir, _ = imp_run
    assert main(["--imp-run", str(imp_dir), "--output", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "name the controls to run with --controls" in err and "random_reinit" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "c").exists()
