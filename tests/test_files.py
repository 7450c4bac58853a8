"""Atomic writes: whole files or none, no temporary left for good, identical bytes for identical runs."""
import hashlib
import json
import subprocess
import sys
import time

import pytest
import torch

from minilth import files


def python(code: str, *args: str, **options) -> subprocess.Popen:
    """Starts `python -c code args...` in another process (another pid than the tests')."""
    return subprocess.Popen([sys.executable, "-c", code, *args], **options)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_save_gives_the_same_bytes_from_another_process_and_folder(tmp_path):
    files.save({"weight": torch.arange(12.0).reshape(3, 4), "names": ["a", "b"]}, tmp_path / "here" / "heads.pt")
    there = python("import sys, torch; from minilth import files\n"
                   "files.save({'weight': torch.arange(12.0).reshape(3, 4), 'names': ['a', 'b']}, sys.argv[1])",
                   str(tmp_path / "there" / "heads.pt"))
    assert there.wait() == 0
    assert digest(tmp_path / "here" / "heads.pt") == digest(tmp_path / "there" / "heads.pt")
    assert torch.equal(torch.load(tmp_path / "there" / "heads.pt", weights_only=True)["weight"],
                       torch.arange(12.0).reshape(3, 4))


def test_an_interrupted_write_leaves_a_temporary_that_the_next_write_replaces(tmp_path):
    path = tmp_path / "heads.pt"
    # half a file, then the process dies as under kill -9: no finally, no exit handlers, the lock dropped by the kernel
    killed = python("import os, sys; from minilth import files\n"
                    "with files.atomic_path(sys.argv[1]) as temp:\n"
                    "    temp.write_bytes(b'PK half a zip')\n"
                    "    os._exit(9)", str(path))
    assert killed.wait() == 9
    assert [p.name for p in tmp_path.iterdir()] == [".heads.tmp.pt"]
    files.save({"w": torch.ones(2)}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["heads.pt"]
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(2))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_text(path, "old\n")
    with pytest.raises(ValueError):
        with files.atomic_path(path) as temp:
            temp.write_text("half")
            raise ValueError("the writer failed")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_folder_where_a_file_goes_is_named_before_any_write_and_nothing_is_left(tmp_path):
    from minilth.errors import MinilthError

    (tmp_path / "summary.png").mkdir()
    with pytest.raises(MinilthError, match=f"{tmp_path / 'summary.png'} is a folder, where minilth writes a file; "
                                           f"move the folder away"):
        files.write_text(tmp_path / "summary.png", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["summary.png"] and not any((tmp_path / "summary.png").iterdir())


def test_two_processes_writing_one_file_at_once_each_rename_a_whole_file(tmp_path):
    """Both writers share the temporary name: the lock makes them take turns, so a reader only ever
    sees one writer's whole file (without it, one would rename the other's half-written file)."""
    path, size, writes = tmp_path / "out" / "mask.pt", 1 << 21, 40
    go = tmp_path / "go"  # both writers start together, so their writes overlap
    writer = ("import os, sys, time; from minilth import files\n"
              "path, letter, writes, size, go = sys.argv[1], sys.argv[2].encode(), *map(int, sys.argv[3:5]), sys.argv[5]\n"
              "while not os.path.exists(go): time.sleep(0.001)\n"
              "for _ in range(writes):\n"
              "    with files.atomic_path(path) as temp:\n"
              "        with open(temp, 'wb') as f:\n"
              "            for _ in range(64):\n"
              "                f.write(letter * (size // 64))\n"
              "        assert temp.read_bytes() == letter * size, 'another writer wrote into my temporary'\n")
    processes = [python(writer, str(path), letter, str(writes), str(size), str(go), stderr=subprocess.PIPE)
                 for letter in "ab"]
    go.touch()
    reads = 0
    while any(p.poll() is None for p in processes):
        if path.exists():
            data = path.read_bytes()
            assert data in (b"a" * size, b"b" * size), "a reader saw a file that no writer finished"
            reads += 1
        time.sleep(0.001)
    assert [p.wait() for p in processes] == [0, 0], [p.stderr.read() for p in processes]
    assert path.read_bytes() in (b"a" * size, b"b" * size) and reads > 0
    assert [p.name for p in path.parent.iterdir()] == ["mask.pt"]


def test_two_identical_tiny_runs_write_identical_mask_head_and_figure_files(tiny_rte_imp_run, tmp_path):
    """A user checks reproducibility with sha256sum: the second run, in another process, must agree byte for byte,
    and its summary figures with the same rounds drawn in this process (no date, no random ids in the SVG)."""
    config, first = tiny_rte_imp_run
    second = tmp_path / "second"
    run = python("import json, sys; from minilth.config import TicketConfig; from minilth.ticket import find_ticket\n"
                 "find_ticket(TicketConfig(**json.loads(sys.argv[1])), sys.argv[2], progress=False, echo=None)",
                 json.dumps(config.to_dict()), str(second))
    assert run.wait() == 0
    written = sorted(p.relative_to(first) for p in first.glob("rounds/*/*.pt"))
    assert [str(p) for p in written] == [f"rounds/round_{i:02d}/{name}" for i in range(3)
                                         for name in ("heads.pt", "mask.pt", "next_mask.pt") if (i, name) != (2, "next_mask.pt")]
    for relative in written:
        assert digest(first / relative) == digest(second / relative), relative
    from minilth.lottery.run_folder import read_run
    from minilth.lottery.verdict import write_summary

    run = read_run(second, with_data=False)
    write_summary(tmp_path / "again", run.rounds, run.task)  # the same rounds drawn again, in this process
    for name in ("summary.png", "summary.svg"):
        assert digest(tmp_path / "again" / name) == digest(second / name), name


def test_each_round_writes_only_its_own_folder_and_the_next_round_trains_with_its_next_mask(
        tiny_checkpoint, glue_dir, tmp_path, monkeypatch):
    """Round k writes mask.pt, heads.pt, next_mask.pt (not the schedule's last) and metrics.json into round_k and
    nothing into round k+1's folder, which does not exist until round k+1 is saved; earlier rounds' files are left
    as they were. Round k+1 trains with exactly the mask round k pruned."""
    import minilth.ticket as ticket
    from minilth.checkpoints import load_mask
    from minilth.config import TicketConfig

    output = tmp_path / "run"
    rounds = output / "rounds"

    def stat_all() -> dict:
        return {p.relative_to(rounds): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
                for p in rounds.rglob("*") if p.is_file()} if rounds.exists() else {}

    seen, real_save_round = [], ticket.save_round

    def save_round(run, round_):
        before = stat_all()
        real_save_round(run, round_)
        after = stat_all()
        changed = {path for path in after if before.get(path) != after[path]}
        assert set(before) <= set(after), f"round {round_.index} removed {set(before) - set(after)}"
        seen.append((round_.index, sorted(str(path) for path in changed), sorted(p.name for p in rounds.iterdir())))

    monkeypatch.setattr(ticket, "save_round", save_round)
    config = TicketConfig(task="rte", model=str(tiny_checkpoint), data_dir=str(glue_dir), target_sparsity=0.2,
                          max_train_examples=8, max_eval_examples=8, epochs=1, batch_size=8, device="cpu")
    ticket.find_ticket(config, output, progress=False, echo=None)

    def own_files(k: int) -> list[str]:
        names = ("heads.pt", "mask.pt", "metrics.json") + (("next_mask.pt",) if k < 2 else ())
        return sorted(f"round_{k:02d}/{name}" for name in names)

    assert seen == [(k, own_files(k), [f"round_{j:02d}" for j in range(k + 1)]) for k in range(3)]
    for k in range(2):
        next_mask, trained_with = load_mask(rounds / f"round_{k:02d}" / "next_mask.pt"), load_mask(
            rounds / f"round_{k + 1:02d}" / "mask.pt")
        assert next_mask == trained_with and next_mask.num_pruned > load_mask(
            rounds / f"round_{k:02d}" / "mask.pt").num_pruned
