"""Finding and fetching a task's data: the data folder, downloads from a mirror into the layout minilth
reads (once), and a one-line error naming the command that fetches the files when a download is not possible."""
import shlex
from pathlib import Path

import pytest

from data_mirror import FIXTURES, load_script, serve_data_mirror
from http_server import serve
from minilth.data.folders import download_command, load_dataset, resolve_data_dir, task_file
from minilth.errors import DataError, MinilthError


def test_data_dir_is_the_argument_else_the_environment_else_data_glue_here(tmp_path, monkeypatch):
    monkeypatch.delenv("MINILTH_DATA_DIR", raising=False)
    assert resolve_data_dir() == Path("data") / "glue" and not resolve_data_dir().is_absolute()
    monkeypatch.setenv("MINILTH_DATA_DIR", str(tmp_path / "from_env"))
    assert resolve_data_dir() == tmp_path / "from_env"
    assert resolve_data_dir(tmp_path / "given") == tmp_path / "given"
    assert resolve_data_dir(str(tmp_path / "given")) == tmp_path / "given"
    monkeypatch.setenv("MINILTH_DATA_DIR", "~/glue")
    assert resolve_data_dir() == Path.home() / "glue"


def test_missing_glue_tasks_download_from_the_mirror_once_into_data_glue(tmp_path, monkeypatch, minilm_tokenizer):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINILTH_DATA_DIR", raising=False)
    with serve_data_mirror(monkeypatch, tmp_path) as server:
        assert len(load_dataset("rte", None, "dev", minilm_tokenizer)) == 40
        assert len(load_dataset("mrpc", None, "train", minilm_tokenizer)) == 40
        requests = server.total_requests
        assert requests == 4  # RTE.zip and MRPC's three source files
        load_dataset("rte", None, "train", minilm_tokenizer)
        load_dataset("mrpc", None, "dev", minilm_tokenizer)
        assert server.total_requests == requests  # the files are there now: no request
    for task in ("RTE", "MRPC"):
        for split in ("train.tsv", "dev.tsv"):  # MRPC rebuilt from the MSR files, BOM and all
            downloaded = tmp_path / "data" / "glue" / task / split
            assert downloaded.read_bytes() == (FIXTURES / "glue" / task / split).read_bytes()


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_hides_the_download_bars_and_only_them(tmp_path, monkeypatch, capsys, tiny_checkpoint, quiet):
    from minilth.checkpoints import download
    from minilth.find_ticket import main

    monkeypatch.setattr(download, "_show_bars", True)  # as a new process starts
    argv = ["--task", "rte", "--model", str(tiny_checkpoint), "--data-dir", str(tmp_path / "glue"), "--device", "cpu",
            "--target-sparsity", "0", "--max-train-examples", "8", "--max-eval-examples", "8", "--batch-size", "8",
            "--epochs", "1", "--output", str(tmp_path / "run")] + ["--quiet"] * quiet
    with serve_data_mirror(monkeypatch, tmp_path):
        assert main(argv) == 0
    err = capsys.readouterr().err
    assert ("RTE.zip" in err) is not quiet and ("unpack RTE.zip" in err) is not quiet, err


def test_squad_and_wikitext_download_beside_the_glue_folder(tmp_path, monkeypatch, minilm_tokenizer):
    glue = tmp_path / "data" / "glue"
    with serve_data_mirror(monkeypatch, tmp_path):
        squad = load_dataset("squad1.1", glue, "dev", minilm_tokenizer)
        mlm = load_dataset("mlm", glue, "dev", minilm_tokenizer)
    assert (tmp_path / "data" / "squad" / "dev-v1.1.json").read_bytes() == (FIXTURES / "squad_tiny.json").read_bytes()
    assert len(squad.examples) > 0 and len(squad.features) >= len(squad.examples)
    corpus = tmp_path / "data" / "wikitext-103-raw"
    assert sorted(p.name for p in corpus.iterdir()) == ["wiki.test.raw", "wiki.train.raw", "wiki.valid.raw"]
    assert (corpus / "wiki.valid.raw").read_bytes() == (FIXTURES / "wikitext" / "wiki.valid.raw").read_bytes()
    assert len(mlm) > 0 and all(len(f["input_ids"]) == 128 for f in mlm.features)
    assert not glue.exists()  # nothing of GLUE was asked for


@pytest.mark.parametrize("task,split,where", [("rte", "train", "glue/RTE/train.tsv"),
                                              ("squad", "dev", "squad/dev-v1.1.json"),
                                              ("mlm", "train", "wikitext-103-raw/wiki.train.raw")])
def test_offline_a_missing_task_names_the_command_that_fetches_it(task, split, where, tmp_path, monkeypatch):
    glue = tmp_path / "my data" / "glue"  # a space: the command quotes the folder
    with pytest.raises(DataError) as error:
        task_file(task, glue, split)
    message = str(error.value)
    assert "\n" not in message and "MINILTH_OFFLINE=1" in message and str(tmp_path / "my data" / where) in message
    command = message.split("`")[1]
    assert command == download_command(task, glue) and command.endswith(f"--data-dir '{glue}'")

    python, script, *argv = shlex.split(command)  # the command does what the message says
    assert python == "python" and script.startswith("data_scripts/")
    with serve_data_mirror(monkeypatch, tmp_path):
        assert load_script(Path(script).stem).main(argv) == 0
    monkeypatch.setenv("MINILTH_OFFLINE", "1")
    assert task_file(task, glue, split) == tmp_path / "my data" / where


def test_no_download_when_told_not_to_or_when_the_task_folder_is_there(glue_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("MINILTH_OFFLINE", raising=False)
    with serve({}) as server:  # an empty mirror: any request would be counted
        monkeypatch.setenv("MINILTH_DATA_URL", server.base_url)
        with pytest.raises(DataError, match=r"RTE/train.tsv not found: download RTE with `python data_scripts/"):
            task_file("rte", tmp_path, "train", download=False)
        # QNLI's folder holds dev.tsv only, as in the project's data: the folder counts as downloaded
        with pytest.raises(DataError, match="--tasks QNLI"):
            task_file("qnli", glue_dir, "train")
        assert server.total_requests == 0
    assert task_file("qnli", glue_dir, "dev") == glue_dir / "QNLI" / "dev.tsv"


def local_mirror(tmp_path, monkeypatch):
    """A folder holding the mirror's files, with downloads allowed and checked against their digests."""
    from data_mirror import digests, mirror_files

    from minilth.data import sources

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    files = mirror_files()
    for name, data in files.items():
        (mirror / name).write_bytes(data)
    monkeypatch.setattr(sources, "SHA256", digests(files))
    monkeypatch.setenv("MINILTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINILTH_OFFLINE", raising=False)
    return mirror


@pytest.mark.parametrize("form", ["folder", "file URL"])
def test_a_mirror_on_this_machine_is_a_folder_or_a_file_url(form, tmp_path, monkeypatch, minilm_tokenizer):
    mirror = local_mirror(tmp_path, monkeypatch)
    monkeypatch.setenv("MINILTH_DATA_URL", str(mirror) if form == "folder" else mirror.as_uri())
    dev = load_dataset("rte", tmp_path / "data" / "glue", "dev", minilm_tokenizer, progress=False)
    assert len(dev.features) == 40 and (tmp_path / "data" / "glue" / "RTE" / "dev.tsv").is_file()


def test_a_mirror_of_another_scheme_is_one_line(tmp_path, monkeypatch, minilm_tokenizer):
    monkeypatch.setenv("MINILTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINILTH_OFFLINE", raising=False)
    monkeypatch.setenv("MINILTH_DATA_URL", "ftp://mirror.example/glue")
    with pytest.raises(MinilthError, match="a mirror must be http\\(s\\)://, file:// or a local folder, not ftp://"):
        load_dataset("rte", tmp_path / "data" / "glue", "dev", minilm_tokenizer, progress=False)


def test_a_damaged_tsv_names_a_command_that_fetches_it_again(tmp_path, monkeypatch, minilm_tokenizer):
    monkeypatch.setenv("MINILTH_DATA_URL", str(local_mirror(tmp_path, monkeypatch)))
    glue = tmp_path / "data" / "glue"
    load_dataset("rte", glue, "dev", minilm_tokenizer, progress=False)
    dev = glue / "RTE" / "dev.tsv"
    dev.write_text(dev.read_text().replace("\t", " ", 3))  # a row with too few fields
    with pytest.raises(MinilthError) as error:
        load_dataset("rte", glue, "dev", minilm_tokenizer, progress=False)
    command = str(error.value).split("`")[1]
    assert command == "python data_scripts/download_glue.py --tasks RTE --force"
    assert load_script("download_glue").main(["--tasks", "RTE", "--force", "--data-dir", str(glue)]) == 0
    assert len(load_dataset("rte", glue, "dev", minilm_tokenizer, progress=False).features) == 40
