"""The IMP loop and its command line: end to end on a tiny checkpoint, resume after kill -9, bad input."""
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from minilth.checkpoints import load_mask
from minilth.config import TicketConfig
from minilth.errors import MinilthError
from minilth.find_ticket import main
from minilth.ticket import find_ticket


def cli_args(checkpoint, glue_dir, output, *extra):
    return ["--task", "rte", "--model", str(checkpoint), "--data-dir", str(glue_dir), "--output", str(output),
            "--target-sparsity", "0.3", "--max-train-examples", "32", "--max-eval-examples", "24",
            "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--quiet", *extra]


def read_run(output):
    summary = json.loads((output / "summary.json").read_text())
    masks = [load_mask(output / "rounds" / f"round_{i:02d}" / "mask.pt") for i in range(len(summary["rounds"]))]
    return summary, masks


def test_cli_end_to_end(tiny_checkpoint, glue_dir, tmp_path, capsys):
    assert main(cli_args(tiny_checkpoint, glue_dir, tmp_path / "run")) == 0
    out = capsys.readouterr().out
    assert "rounds at sparsity 0%, 10%, 20%, 30%" in out and "winning ticket" in out
    summary, masks = read_run(tmp_path / "run")
    assert [r["sparsity"] for r in summary["rounds"]] == [0.0, 0.1, 0.2, 0.3]
    for mask, target in zip(masks, [0.0, 0.1, 0.2, 0.3]):
        assert abs(mask.num_pruned - target * mask.num_total) <= 0.5  # exact up to rounding to whole weights
    assert [r["actual_sparsity"] for r in summary["rounds"]] == [m.sparsity for m in masks]
    for earlier, later in zip(masks, masks[1:]):
        for name, kept in later.items():
            assert not (kept & ~earlier[name]).any(), "a pruned weight came back"
    assert (tmp_path / "run" / "summary.csv").read_text().startswith("round,sparsity")
    assert (tmp_path / "run" / "summary.png").stat().st_size > 0


def test_each_round_prunes_the_model_the_round_before_trained_not_theta_0(tiny_rte_imp_run):
    """IMP, not one-shot pruning: round k+1's mask is round k's subnetwork, rewound to theta_0 and fine-tuned as the
    round did (on the CPU the same numbers), pruned by magnitude; pruning theta_0 itself gives another mask."""
    from minilth.lottery.run_folder import read_run as read_ticket_run
    from minilth.prune import Mask, magnitude_prune, rewind, snapshot
    from minilth.train import finetune, model_for_task

    config, output = tiny_rte_imp_run
    run = read_ticket_run(output, progress=False)
    seed = config.seeds[0]
    theta_0 = snapshot(model_for_task(run.checkpoint, run.task, seed))
    for done, pruned in zip(run.rounds, run.rounds[1:]):
        model = model_for_task(run.checkpoint, run.task, seed)
        rewind(model, theta_0, done.mask)
        finetune(model, run.task, *run.data, config, seed=seed, mask=done.mask, progress=False)
        assert magnitude_prune(model, done.mask, pruned.sparsity) == pruned.mask, f"round {pruned.index}"
        oneshot = magnitude_prune(theta_0, Mask.dense(theta_0, done.mask.names()), pruned.sparsity)
        assert oneshot != pruned.mask, "the run is too short to tell IMP from one-shot pruning"


def test_keep_pooler_leaves_it_out_of_every_mask(tiny_checkpoint, glue_dir, tmp_path):
    args = cli_args(tiny_checkpoint, glue_dir, tmp_path / "run", "--keep-pooler")
    args[args.index("--target-sparsity") + 1] = "0.1"
    assert main(args) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["keep_pooler"] is True
    _, masks = read_run(tmp_path / "run")
    pooler = "bert.pooler.dense.weight"
    assert all(pooler not in mask.names() for mask in masks) and masks[1].num_pruned > 0


def test_a_small_pooler_is_warned_about_unless_kept_dense(tiny_checkpoint, glue_dir, tmp_path, caplog):
    small_pooler = tmp_path / "small_pooler"
    shutil.copytree(tiny_checkpoint, small_pooler)
    state = torch.load(small_pooler / "pytorch_model.bin", weights_only=True)
    state["bert.pooler.dense.weight"] *= 0.1  # like all-MiniLM-L6-v2's unused pooler
    torch.save(state, small_pooler / "pytorch_model.bin")
    for checkpoint, extra, warned in [(tiny_checkpoint, [], False), (small_pooler, [], True),
                                      (small_pooler, ["--keep-pooler"], False)]:
        caplog.clear()
        args = cli_args(checkpoint, glue_dir, tmp_path / f"run_{checkpoint.name}_{len(extra)}", *extra)
        args[args.index("--target-sparsity") + 1] = "0"
        assert main(args) == 0
        assert ("--keep-pooler" in caplog.text) == warned


def test_a_run_written_before_a_config_field_existed_resumes_with_its_default(tiny_rte_imp_run, tmp_path):
    config, output = tiny_rte_imp_run
    old_run = tmp_path / "old_run"
    shutil.copytree(output, old_run)
    stored = json.loads((old_run / "config.json").read_text())
    del stored["keep_pooler"]  # config.json as written before --keep-pooler
    (old_run / "config.json").write_text(json.dumps(stored))
    assert len(find_ticket(config, old_run, progress=False, echo=None)) == 3  # finished: nothing to train
    with pytest.raises(MinilthError, match="keep_pooler differ"):
        find_ticket(dataclasses.replace(config, keep_pooler=True), old_run, progress=False, echo=None)


def test_resume_after_kill_equals_uninterrupted(tiny_checkpoint, glue_dir, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    command = [sys.executable, "-m", "minilth.find_ticket", *cli_args(tiny_checkpoint, glue_dir, killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first_round = killed / "rounds" / "round_00" / "metrics.json"
    deadline = time.time() + 120
    while not first_round.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert first_round.exists() and not (killed / "rounds" / "round_03" / "metrics.json").exists()

    assert subprocess.run(command).returncode == 0
    assert main(cli_args(tiny_checkpoint, glue_dir, whole)) == 0
    (resumed_summary, resumed_masks), (whole_summary, whole_masks) = read_run(killed), read_run(whole)
    strip = lambda s: [{k: v for k, v in r.items() if k != "seconds"} for r in s["rounds"]]  # noqa: E731
    assert strip(resumed_summary) == strip(whole_summary)
    assert resumed_masks == whole_masks


def test_bad_input_is_one_clear_line(tiny_checkpoint, glue_dir, tmp_path, capsys):
    assert main(cli_args(tiny_checkpoint, glue_dir, tmp_path / "a", "--target-sparsity", "1.0")) == 2
    assert "--target-sparsity must be in [0, 1)" in capsys.readouterr().err
    assert main(["--task", "rtx", "--output", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'rtx'" in err and "rte" in err and len(err.strip().splitlines()) == 1


def test_output_folder_with_another_config(tiny_checkpoint, glue_dir, tmp_path):
    config = TicketConfig(task="rte", model=str(tiny_checkpoint), data_dir=str(glue_dir), target_sparsity=0.1,
                          max_train_examples=16, max_eval_examples=8, epochs=1, device="cpu")
    find_ticket(config, tmp_path, progress=False, echo=None)
    other = TicketConfig(**{**config.to_dict(), "seeds": [1]})
    with pytest.raises(MinilthError, match="holds a run with a different config \\(seeds differ\\)"):
        find_ticket(other, tmp_path, progress=False, echo=None)


def test_a_run_that_cannot_start_leaves_nothing_and_the_corrected_command_runs(
        tiny_checkpoint, glue_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MINILTH_OFFLINE", "1")  # a missing data folder must not reach for the network
    output = tmp_path / "run"
    cases = [(["--rate", "0"], "--rate must be in (0, 1), got 0.0"),
             (["--epochs", "0"], "--epochs must be positive, got 0.0"),
             (["--epochs", "-1"], "--epochs must be positive, got -1.0"),
             (["--batch-size", "0"], "--batch-size must be positive, got 0"),
             (["--batch-size", "-4"], "--batch-size must be positive, got -4"),
             (["--learning-rate=-2e-5"], "--learning-rate must be positive"),
             (["--warmup-ratio", "1.5"], "--warmup-ratio must be in [0, 1)"),
             (["--device", "gpu"], "unknown device 'gpu' (--device); use auto, cpu, cuda or cuda:N"),
             (["--max-train-examples", "0"], "--max-train-examples must be at least 1"),
             (["--data-dir", str(tmp_path / "nowhere")], "not found")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "PyTorch sees no CUDA GPU; use --device cpu"))
    for extra, message in cases:
        assert main(cli_args(tiny_checkpoint, glue_dir, output, *extra)) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (extra, err)
        assert not output.exists() or not any(output.iterdir()), f"{extra} left files behind"
    assert main(cli_args(tiny_checkpoint, glue_dir, output)) == 0


def test_a_folder_without_a_finished_round_belongs_to_nobody(tiny_checkpoint, glue_dir, tmp_path):
    output = tmp_path / "run"
    output.mkdir()
    (output / "config.json").write_text(json.dumps({"task": "rte", "seeds": [7]}))  # a run killed in round 0
    assert main(cli_args(tiny_checkpoint, glue_dir, output, "--target-sparsity", "0.1")) == 0
    assert json.loads((output / "config.json").read_text())["seeds"] == [0]


def truncate(path):
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


@pytest.mark.parametrize("damaged, deleted, redone", [
    ("rounds/round_01/metrics.json", None, 1),
    ("rounds/round_02/mask.pt", None, 2),
    ("rounds/round_01/heads.pt", "rounds/round_02/metrics.json", 1),
    ("rounds/round_01/next_mask.pt", None, 1),
    ("theta_i.pt", None, 0),
    ("summary.json", "summary.png", None),
])
def test_a_damaged_derived_file_is_redone_saying_so_and_the_run_ends_as_an_undamaged_one(
        tiny_checkpoint, glue_dir, tmp_path, caplog, damaged, deleted, redone):
    # --no-rewind-head: round 2 starts from round 1's trained head, so heads.pt is read; --rewind-at: theta_i.pt
    args = lambda output: cli_args(tiny_checkpoint, glue_dir, output, "--target-sparsity", "0.2",  # noqa: E731
                                   "--no-rewind-head", "--rewind-at", "0.5")
    whole, damaged_run = tmp_path / "whole", tmp_path / "damaged"
    assert main(args(whole)) == 0
    shutil.copytree(whole, damaged_run)
    if deleted:
        (damaged_run / deleted).unlink()
    truncate(damaged_run / damaged)
    caplog.clear()

    assert main(args(damaged_run)) == 0
    expected = f"round {redone} is trained again" if redone is not None else "summary.json, .csv and .png are written again"
    assert str(damaged_run / damaged) in caplog.text and expected in caplog.text, caplog.text
    (recovered, recovered_masks), (reference, reference_masks) = read_run(damaged_run), read_run(whole)
    strip = lambda s: [{k: v for k, v in r.items() if k != "seconds"} for r in s["rounds"]]  # noqa: E731
    assert strip(recovered) == strip(reference) and recovered_masks == reference_masks
    assert (damaged_run / "summary.png").is_file()


def test_a_round_that_trained_with_another_mask_than_the_one_before_it_pruned_is_redone(
        tiny_rte_imp_run, tmp_path, caplog):
    """Round 2's files as a repair interrupted after redoing round 1 can leave them: whole, but trained with a mask
    that is not round 1's next_mask.pt. Reading the run is a one-line error; resuming it trains round 2 again."""
    from minilth.checkpoints import save_mask
    from minilth.checkpoints.download import file_sha256
    from minilth.lottery.run_folder import read_run as read_run_folder
    from minilth.prune import Mask

    config, output = tiny_rte_imp_run
    stale = tmp_path / "stale"
    shutil.copytree(output, stale)
    trained_with = load_mask(stale / "rounds" / "round_02" / "mask.pt")
    name = trained_with.names()[0]
    flags = trained_with[name].clone().flatten()
    kept, pruned = flags.nonzero()[0, 0], (~flags).nonzero()[0, 0]
    flags[kept], flags[pruned] = False, True  # as many pruned, another one
    other = Mask({**dict(trained_with.items()), name: flags.view_as(trained_with[name])})
    assert other != trained_with and other.num_pruned == trained_with.num_pruned
    save_mask(other, stale / "rounds" / "round_02" / "mask.pt")
    record = json.loads((stale / "rounds" / "round_02" / "metrics.json").read_text())
    record["files"]["mask.pt"] = file_sha256(stale / "rounds" / "round_02" / "mask.pt")  # whole, as round 2 wrote it
    (stale / "rounds" / "round_02" / "metrics.json").write_text(json.dumps(record))

    with pytest.raises(MinilthError, match="round_02.*is not the mask round 1 pruned.*trains round 2 again"):
        read_run_folder(stale, with_data=False)
    caplog.clear()
    find_ticket(config, stale, progress=False, echo=None)
    assert "round 2 is trained again" in caplog.text, caplog.text
    assert load_mask(stale / "rounds" / "round_02" / "mask.pt") == load_mask(
        stale / "rounds" / "round_01" / "next_mask.pt") == trained_with
    assert [r.metrics for r in read_run_folder(stale, with_data=False).rounds] == [
        r.metrics for r in read_run_folder(output, with_data=False).rounds]


def test_a_damaged_config_is_one_line_naming_it(tiny_rte_imp_run, tmp_path, capsys):
    config, output = tiny_rte_imp_run
    damaged = tmp_path / "damaged"
    shutil.copytree(output, damaged)
    truncate(damaged / "config.json")
    with pytest.raises(MinilthError, match="config.json is missing or damaged"):
        find_ticket(config, damaged, progress=False, echo=None)
    (damaged / "config.json").write_text(json.dumps({**config.to_dict(), "seeds": [-3]}))
    with pytest.raises(MinilthError, match=r"config.json: seeds must be whole numbers"):
        find_ticket(config, damaged, progress=False, echo=None)


def test_a_config_from_another_version_is_one_line_for_every_command(tiny_rte_imp_run, tmp_path, capsys):
    from minilth.controls import main as controls_main

    _, output = tiny_rte_imp_run
    newer = tmp_path / "newer"
    shutil.copytree(output, newer)
    stored = json.loads((newer / "config.json").read_text())
    (newer / "config.json").write_text(json.dumps({**stored, "future_setting": 1}))
    assert controls_main(["--imp-run", str(newer), "--controls", "random_pruning", "--output", str(tmp_path / "c"),
                          "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "does not know (future_setting)" in err and "delete those keys" in err and len(err.splitlines()) == 1


def test_rewinding_to_theta_i_starts_the_later_rounds_at_step_i_from_theta_i(
        tiny_checkpoint, glue_dir, tmp_path, monkeypatch):
    import minilth.ticket as ticket
    from minilth.prune import snapshot

    calls, real_finetune = [], ticket.finetune

    def recording(model, *args, **kwargs):
        calls.append((kwargs["start_step"], kwargs["snapshot_at"], snapshot(model)))
        return real_finetune(model, *args, **kwargs)

    monkeypatch.setattr(ticket, "finetune", recording)
    config = TicketConfig(task="rte", model=str(tiny_checkpoint), data_dir=str(glue_dir), target_sparsity=0.1,
                          rewind_at=0.5, max_train_examples=48, max_eval_examples=8, epochs=2, batch_size=16,
                          device="cpu")
    rounds = find_ticket(config, tmp_path, progress=False, echo=None)
    theta_i = torch.load(tmp_path / "theta_i.pt", weights_only=True)
    assert theta_i["step"] == 3  # half of 2 epochs x 3 batches
    (start_0, snapshot_0, _), (start_1, snapshot_1, weights_1) = calls
    assert (start_0, snapshot_0) == (0, 0.5) and (start_1, snapshot_1) == (3, None)
    mask = rounds[1].mask
    for name, tensor in theta_i["weights"][0].items():  # round 1 starts from m * theta_i, head included
        assert torch.equal(weights_1[name], tensor * mask[name] if name in mask else tensor), name

    (tmp_path / "rounds" / "round_01" / "metrics.json").unlink()  # resuming reads theta_i back from disk
    assert find_ticket(config, tmp_path, progress=False, echo=None)[1].metrics == rounds[1].metrics


def test_without_matplotlib_the_summary_says_the_plot_is_missing(tiny_rte_imp_run, tmp_path, monkeypatch, caplog):
    from minilth.data.tasks import get_task
    from minilth.lottery.run_folder import read_run as read_ticket_run
    from minilth.lottery.verdict import write_summary

    _, output = tiny_rte_imp_run
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib...` now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    write_summary(tmp_path, read_ticket_run(output, with_data=False).rounds, get_task("rte"))
    assert (tmp_path / "summary.csv").exists() and not (tmp_path / "summary.png").exists()
    assert "summary.png not written: matplotlib is not installed" in caplog.text


def test_the_reference_codes_learning_rate_spans_all_rounds(tiny_checkpoint, glue_dir, tmp_path, monkeypatch):
    """LT_glue.py builds a fresh AdamW each round whose linear decay spans every round's epochs."""
    import minilth.ticket as ticket

    rates, real_finetune = [], ticket.finetune

    def recording(*args, **kwargs):
        history = real_finetune(*args, **kwargs)
        rates.append(history.learning_rates)
        return history

    monkeypatch.setattr(ticket, "finetune", recording)
    settings = dict(task="rte", model=str(tiny_checkpoint), data_dir=str(glue_dir), target_sparsity=0.2,
                    max_train_examples=32, max_eval_examples=8, epochs=1, batch_size=8, learning_rate=1e-4,
                    device="cpu")
    find_ticket(TicketConfig(**settings, lr_decay="all_rounds"), tmp_path / "reference", progress=False, echo=None)
    find_ticket(TicketConfig(**settings), tmp_path / "minilth", progress=False, echo=None)
    reference, default = rates[:3], rates[3:]
    # 3 rounds of 4 steps: each round restarts 1e-4 and falls by 1/3 of it, ...
    assert all(r == pytest.approx([1e-4 * (1 - k / 12) for k in range(4)]) for r in reference)
    # ... where minilth's default decays to 0 within every fine-tuning.
    assert all(r == pytest.approx([1e-4 * (1 - k / 4) for k in range(4)]) for r in default)


def rounds_of(*per_round, se=None, chance=None):
    """Fake finished rounds: one list of ticket-metric values (one per seed) per round, at 0%, 25%, 50%, ..."""
    from minilth.lottery.run_folder import Round
    from minilth.prune import Mask

    extra = {k: v for k, v in (("acc_se", se), ("acc_chance", chance)) if v is not None}
    return [Round(i, 0.25 * i, Mask({"w": torch.ones(4, dtype=torch.bool)}), [{"acc": v, **extra} for v in values])
            for i, values in enumerate(per_round)]


def test_one_seed_near_chance_is_undecided_however_the_rounds_score():
    from minilth.data.tasks import get_task
    from minilth.lottery.verdict import summarize

    # notebook 04's old RTE numbers: 51.6 dense, every round within a point of it, 52.7 majority class
    summary = summarize(rounds_of([0.516], [0.513], [0.524], se=0.03, chance=0.527), get_task("rte"))
    assert summary["ticket_within_noise"] is None and summary["ticket_at_least_dense"] is None
    assert summary["verdict"].startswith("undecided") and "one seed: the dev set's sampling error" in \
        summary["noise_rule"] and summary["noise"] == 0.03


def test_a_dense_model_within_two_sampling_errors_of_chance_is_undecided():
    from minilth.data.tasks import get_task
    from minilth.lottery.verdict import summarize, table2_verdict

    # RTE on MiniLM, 3 seeds: 52.7 (the majority class), 57.8, 56.7; the mean is 3.0 points above chance, more
    # than one std over seeds (2.7) but not than two sampling errors of 277 dev pairs (6.0)
    rte = rounds_of([0.527, 0.578, 0.567], [0.568, 0.560, 0.575], se=0.03, chance=0.527)
    summary = summarize(rte, get_task("rte"))
    assert summary["verdict"].startswith("undecided: the dense model's 0.5573 is within noise (0.0600) of the 0.5270")
    assert summary["ticket_within_noise"] is None and summary["noise"] == pytest.approx(0.0268, abs=1e-4)
    results = {"dense": rte[0].metrics, "imp": rte[1].metrics}
    assert table2_verdict(results, get_task("rte"), 0.25)[0].startswith("undecided at 25%")
    # with 2,770 dev pairs the same scores would be 3 sampling errors above chance: the dense model learned
    learned = summarize(rounds_of([0.527, 0.578, 0.567], [0.568, 0.560, 0.575], se=0.0095, chance=0.527),
                        get_task("rte"))
    assert learned["verdict"].startswith("the dense model learned") and learned["ticket_within_noise"] == 0.25


def test_one_seed_uses_the_dev_sets_sampling_error_and_seeds_their_spread():
    from minilth.data.tasks import get_task
    from minilth.lottery.verdict import summarize

    one = summarize(rounds_of([0.80], [0.795], [0.70], se=0.01, chance=0.5), get_task("rte"))
    assert one["ticket_within_noise"] == 0.25 and one["ticket_at_least_dense"] is None
    assert one["verdict"].startswith("the dense model learned")
    three = summarize(rounds_of([0.80, 0.82, 0.78], [0.785] * 3, [0.81] * 3, se=0.01, chance=0.5), get_task("rte"))
    assert three["noise"] == pytest.approx(0.02) and "over 3 seeds" in three["noise_rule"]
    assert three["ticket_within_noise"] == 0.5 and three["ticket_at_least_dense"] == 0.5


def test_the_classroom_preset_runs_imp_and_random_pruning_and_prints_both_verdicts(
        tiny_checkpoint, glue_dir, tmp_path, capsys):
    output = tmp_path / "classroom"
    tiny = ["--model", str(tiny_checkpoint), "--data-dir", str(glue_dir), "--max-train-examples", "16",
            "--max-eval-examples", "16", "--batch-size", "8", "--device", "cpu", "--quiet", "--output", str(output)]
    assert main(["--preset", "classroom", *tiny]) == 0
    out = capsys.readouterr().out
    config = json.loads((output / "config.json").read_text())
    assert (config["task"], config["seeds"], config["target_sparsity"], config["keep_pooler"]) == ("stsb", [0, 1, 2],
                                                                                                     0.5, True)
    assert config["model"] == str(tiny_checkpoint)  # a flag given replaces the preset's value
    assert "winning ticket (within noise of dense" in out and "(at least dense)" in out
    for label in ("Full model (dense)", "IMP", "Random pruning"):
        assert label in out
    assert "IMP minus random pruning at 50%" in out
    assert len(list((output / "controls" / "sparsity_0.50" / "random_pruning").glob("seed_*.json"))) == 3
    assert main(["--output", str(tmp_path / "nothing")]) == 2
    assert "give --task (or a --preset that names one: classroom)" in capsys.readouterr().err


def test_a_gap_smaller_than_the_spread_is_not_called_a_separation():
    from minilth.lottery.verdict import separation

    assert separation(75.86, 0.69) == "+75.86 points, 110 times the larger std over seeds"
    assert separation(-8.53, 18.81) == "-8.53 points, within the larger std over seeds (18.81): not told apart"
    assert separation(-40.0, 2.0) == "-40.00 points, 20 times the larger std over seeds"
    assert separation(1.0, 0.0) == "+1.00 points"


def test_the_clock_times_one_fine_tunings_own_steps_and_says_the_time_left_once(monkeypatch):
    """lottery/plan.py's Clock on a run of 2 rounds x 2 seeds, 20 steps and an 8-example eval pass each: after the
    first step and 10 more of one fine-tuning (0.5 s each), the time left is every fine-tuning's steps and eval
    passes (a third of a step per batch) less the 11 steps already run."""
    from types import SimpleNamespace

    from minilth.data import get_task
    from minilth.lottery import plan

    now = [100.0]
    monkeypatch.setattr(plan.time, "perf_counter", lambda: now[0])
    config = TicketConfig(task="rte", target_sparsity=0.1, epochs=1, batch_size=2, seeds=[0, 1])
    run = SimpleNamespace(config=config, task=get_task("rte"), rounds=[], sparsities=config.sparsities(),
                          data=(SimpleNamespace(features=[None] * 40), SimpleNamespace(features=[None] * 8)))
    printed = []
    clock = plan.Clock(run, printed.append)

    def steps(first: int, last: int, seconds: float) -> None:
        for step in range(first, last + 1):
            now[0] += seconds
            clock.tick(step, None)

    steps(0, 9, 5.0)  # a fine-tuning too short to time (10 steps)...
    steps(0, 9, 0.5)  # ...then another: only its own steps count, and 10 steps are not yet enough
    assert printed == []
    steps(10, 19, 0.5)
    expected = (4 * (20 + 8 / 2 / 3) - 11) * 0.5  # 37.2 s
    assert printed == [f"estimated time left: about {round(expected)} s (from this run's first 10 steps)"]
    steps(0, 19, 0.5)  # once only
    assert len(printed) == 1
    silent = plan.Clock(run, None)
    silent.tick(0, None)
    assert silent.times == []  # no echo: nothing timed


def test_the_time_estimate_comes_from_the_runs_own_steps_once_and_trains_nothing_extra(
        tiny_checkpoint, glue_dir, tmp_path, monkeypatch):
    import minilth.ticket as ticket

    fine_tunings, real_finetune = [], ticket.finetune
    monkeypatch.setattr(ticket, "finetune", lambda *a, **k: fine_tunings.append(1) or real_finetune(*a, **k))
    printed = []
    config = TicketConfig(task="rte", model=str(tiny_checkpoint), data_dir=str(glue_dir), target_sparsity=0.1,
                          max_train_examples=40, max_eval_examples=8, epochs=1, batch_size=2, seeds=[0, 1],
                          device="cpu")  # 20 steps per fine-tuning: enough to time 10 after the first
    find_ticket(config, tmp_path / "timed", progress=False, echo=printed.append)
    assert len(fine_tunings) == 4  # 2 rounds x 2 seeds, and not one step more for the estimate
    estimates = [line for line in printed if line.startswith("estimated time left: about ")]
    assert len(estimates) == 1 and "from this run's first 10 steps" in estimates[0]
    printed.clear()
    short = dataclasses.replace(config, max_train_examples=8)  # 2 steps per fine-tuning: too short to time
    find_ticket(short, tmp_path / "short", progress=False, echo=printed.append)
    assert not any("estimated" in line for line in printed) and "rounds at sparsity 0%, 10%" in printed[0]


def test_table2_verdict_calls_a_ticket_only_where_the_dense_model_learned():
    """RTE on MiniLM sits at chance: its verdict is 'undecided', never a ticket, while a task the model learned gets
    both definitions and the gap to each control in stds over seeds."""
    from minilth.data.tasks import get_task
    from minilth.lottery.verdict import table2_verdict
    stsb = lambda *values: [{"pearson": v, "pearson_chance": 0.0} for v in values]  # noqa: E731
    learned = {"dense": stsb(0.77, 0.80, 0.80), "imp": stsb(0.81, 0.82, 0.82), "random_pruning": stsb(0.07, 0.06, 0.06)}
    lines = table2_verdict(learned, get_task("stsb"), 0.5)
    assert lines[0] == "IMP at 50%: a winning ticket within one dense std (1.73), at least the dense mean"
    assert lines[1].startswith("IMP minus random pruning at 50%: +75.33 points, ") and "times the larger std" in lines[1]
    below = {**learned, "imp": stsb(0.78, 0.78, 0.78)}
    assert table2_verdict(below, get_task("stsb"), 0.5)[0] == ("IMP at 50%: a winning ticket within one dense std "
                                                               "(1.73), below the dense mean")
    far_below = {**learned, "imp": stsb(0.70, 0.71, 0.72)}
    assert table2_verdict(far_below, get_task("stsb"), 0.5)[0].startswith("IMP at 50%: no winning ticket")
    rte = lambda *values: [{"acc": v, "acc_chance": 0.527} for v in values]  # noqa: E731
    chance = {"dense": rte(0.55, 0.52, 0.54), "imp": rte(0.56, 0.55, 0.55), "random_pruning": rte(0.53, 0.53, 0.52)}
    lines = table2_verdict(chance, get_task("rte"), 0.6)
    assert lines[0].startswith("undecided at 60%: the dense model's acc 53.67 is within noise (1.53) of the 52.70")
    assert not any("a winning ticket" in line for line in lines) and lines[1].startswith("IMP minus random pruning")
