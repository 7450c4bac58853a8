"""The data_scripts against a local mirror serving tiny archives in the real layouts."""
import pytest

from data_mirror import digests, load_script, zip_bytes
from http_server import serve
from minilth.data import sources as data_sources
from minilth.checkpoints import download as dl

MSR_HEADER = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
MSR_TRAIN = MSR_HEADER + (
    "1\t702876\t702977\tAmrozi accused his brother .\tReferring to him , Amrozi accused his brother .\n"
    "0\t2108705\t2108831\tYucaipa owned Dominick 's .\tYucaipa bought Dominick 's in 1995 .\n"
    "1\t1355540\t1355592\tHe said the pie business doesn 't fit .\tThe pie business does not fit .\n"
    "0\t2029631\t2029565\tMagnarelli said Racicot hated it .\tHis wife said he was behind it .\n"
)
MSR_TEST = MSR_HEADER + (
    "1\t1089874\t1089925\tPCCW 's chief operating officer .\tCurrent Chief Operating Officer .\n"
    "0\t3019446\t3019327\tThe world 's two largest makers .\tDomestic sales at both firms .\n"
)
DEV_IDS = "1355540\t1355592\n2029631\t2029565\n"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINILTH_OFFLINE", raising=False)
    monkeypatch.setattr(dl, "RETRY_WAIT_S", 0.0)


def serve_with_digests(monkeypatch, files: dict[str, bytes]):
    """Serve `files` at the mirror's root, with minilth's sha256 table set to their digests."""
    monkeypatch.setattr(data_sources, "SHA256", digests(files))
    return serve({f"/{name}": data for name, data in files.items()})


# ---------------------------------------------------------------------------- GLUE


GLUE_FILES = {
    "RTE.zip": zip_bytes({"RTE/train.tsv": "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n",
                          "RTE/dev.tsv": "index\tsentence1\tsentence2\tlabel\n0\tc\td\tnot_entailment\n",
                          "RTE/test.tsv": "index\tsentence1\tsentence2\n0\te\tf\n"}),
    "CoLA.zip": zip_bytes({"CoLA/": "", "CoLA/train.tsv": "gj04\t1\t\tOur friends won't buy this.\n",
                           "CoLA/original/raw/in_domain_train.tsv": "raw\n"}),
    "QQP-clean.zip": zip_bytes({"QQP/dev.tsv": "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"}),
    "msr_paraphrase_train.txt": MSR_TRAIN.encode(),
    "msr_paraphrase_test.txt": MSR_TEST.encode(),
    "mrpc_dev_ids.tsv": DEV_IDS.encode(),
}


def test_glue_official_layout_and_second_run_makes_no_request(tmp_path, monkeypatch, capsys):
    glue = load_script("download_glue")
    out = tmp_path / "data"
    with serve_with_digests(monkeypatch, GLUE_FILES) as server:
        argv = ["--tasks", "rte,CoLA", "qqp", "mrpc", "--out", str(out), "--base-url", server.base_url]
        assert glue.main(argv) == 0
        requests_after_first_run = server.total_requests
        assert glue.main(argv) == 0
        assert server.total_requests == requests_after_first_run == 6

    assert sorted(p.name for p in (out / "glue").iterdir()) == ["CoLA", "MRPC", "QQP", "RTE"]
    assert sorted(p.name for p in (out / "glue" / "RTE").iterdir()) == ["dev.tsv", "test.tsv", "train.tsv"]
    assert (out / "glue" / "RTE" / "dev.tsv").read_text() == \
        "index\tsentence1\tsentence2\tlabel\n0\tc\td\tnot_entailment\n"
    assert (out / "glue" / "CoLA" / "train.tsv").read_text() == "gj04\t1\t\tOur friends won't buy this.\n"
    assert (out / "glue" / "CoLA" / "original" / "raw" / "in_domain_train.tsv").read_text() == "raw\n"
    assert (out / "glue" / "QQP" / "dev.tsv").is_file()
    printed = capsys.readouterr().out
    assert f"RTE: {out / 'glue' / 'RTE'}" in printed and f"MRPC: {out / 'glue' / 'MRPC'}" in printed


def test_mrpc_split_matches_the_official_script(tmp_path, monkeypatch):
    glue = load_script("download_glue")
    with serve_with_digests(monkeypatch, GLUE_FILES) as server:
        assert glue.main(["--tasks", "MRPC", "--out", str(tmp_path), "--base-url", server.base_url]) == 0
    mrpc = tmp_path / "glue" / "MRPC"
    train_lines = MSR_TRAIN.splitlines(keepends=True)
    # dev: the header, then the training pairs whose (id1, id2) is in dev_ids, in file order.
    assert (mrpc / "dev.tsv").read_text(encoding="utf-8") == train_lines[0] + train_lines[3] + train_lines[4]
    assert (mrpc / "train.tsv").read_text(encoding="utf-8") == train_lines[0] + train_lines[1] + train_lines[2]
    assert (mrpc / "test.tsv").read_text(encoding="utf-8") == (
        "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        "0\t1089874\t1089925\tPCCW 's chief operating officer .\tCurrent Chief Operating Officer .\n"
        "1\t3019446\t3019327\tThe world 's two largest makers .\tDomestic sales at both firms .\n")
    # The same BOM-prefixed header as the real MRPC files shipped with the project.
    assert (mrpc / "train.tsv").read_bytes().startswith(b"\xef\xbb\xbfQuality\t#1 ID")


def test_glue_zip_slip_is_refused(tmp_path, monkeypatch, capsys):
    glue = load_script("download_glue")
    evil = {"RTE.zip": zip_bytes({"RTE/train.tsv": "ok\n", "RTE/../../../evil.txt": "owned\n"})}
    out = tmp_path / "data"
    with serve_with_digests(monkeypatch, evil) as server:
        assert glue.main(["--tasks", "RTE", "--out", str(out), "--base-url", server.base_url]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "refusing" in message and "evil.txt" in message
    assert list((out / "glue").iterdir()) == []  # neither RTE/ nor a half-unpacked folder
    assert not list(tmp_path.rglob("evil.txt"))


def test_glue_checksum_mismatch_and_unknown_task_are_one_line_errors(tmp_path, monkeypatch, capsys):
    glue = load_script("download_glue")
    with serve({"/RTE.zip": GLUE_FILES["RTE.zip"]}) as server:  # the official digest cannot match
        assert glue.main(["--tasks", "RTE", "--out", str(tmp_path), "--base-url", server.base_url]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "sha256 mismatch" in message and data_sources.SHA256["RTE.zip"] in message
    assert not (tmp_path / "glue" / "RTE").exists()

    assert glue.main(["--tasks", "RTE,SQuAD", "--out", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "unknown GLUE task 'SQuAD'" in message and "CoLA, SST-2, MRPC" in message


def test_glue_task_names_resolve_in_any_spelling():
    assert data_sources.resolve_glue_tasks(["sst2,sts-b", "STS", "mnli"]) == ["SST-2", "STS-B", "MNLI"]
    assert data_sources.resolve_glue_tasks(["all"]) == data_sources.GLUE_TASKS
    assert data_sources.GLUE_TASKS == ["CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI"]
    assert set(data_sources.GLUE_ARCHIVES) == set(data_sources.GLUE_TASKS) - {"MRPC"}


def test_default_folder_and_mirror_come_from_the_environment(tmp_path, monkeypatch, capsys):
    glue = load_script("download_glue")
    monkeypatch.setenv("MINILTH_DATA_DIR", str(tmp_path / "mine"))
    with serve_with_digests(monkeypatch, GLUE_FILES) as server:
        monkeypatch.setenv("MINILTH_DATA_URL", server.base_url + "/")
        assert glue.main(["--tasks", "RTE"]) == 0
        assert server.requests["/RTE.zip"] == 1
    assert (tmp_path / "mine" / "RTE" / "train.tsv").is_file()
    assert f"RTE: {tmp_path / 'mine' / 'RTE'}" in capsys.readouterr().out


# ---------------------------------------------------------------------------- SQuAD


def test_squad_files_and_second_run_makes_no_request(tmp_path, monkeypatch, capsys):
    squad = load_script("download_squad")
    files = {"train-v1.1.json": b'{"version": "1.1", "data": [{"title": "t"}]}',
             "dev-v1.1.json": b'{"version": "1.1", "data": []}'}
    with serve_with_digests(monkeypatch, files) as server:
        argv = ["--out", str(tmp_path / "data"), "--base-url", server.base_url]
        assert squad.main(argv) == 0
        assert squad.main(argv) == 0
        assert server.total_requests == 2
    for name, data in files.items():
        assert (tmp_path / "data" / "squad" / name).read_bytes() == data
    assert str(tmp_path / "data" / "squad" / "dev-v1.1.json") in capsys.readouterr().out


def test_squad_missing_on_mirror_is_a_one_line_error(tmp_path, capsys):
    squad = load_script("download_squad")
    with serve({}) as server:
        assert squad.main(["--out", str(tmp_path), "--base-url", server.base_url]) == 2
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and "404" in message and "train-v1.1.json" in message


# ---------------------------------------------------------------------------- WikiText


@pytest.mark.parametrize("variant", ["103", "2"])
def test_wikitext_layout_and_second_run_makes_no_request(tmp_path, monkeypatch, variant):
    wikitext = load_script("download_wikitext")
    folder = f"wikitext-{variant}-raw"
    splits = {name: f" = Title {name} = \n text of {name} \n" for name in data_sources.WIKITEXT_SPLIT_FILES}
    files = {f"{folder}-v1.zip": zip_bytes({f"{folder}/{name}": text for name, text in splits.items()})}
    out = tmp_path / "data"
    with serve_with_digests(monkeypatch, files) as server:
        argv = ["--variant", variant, "--out", str(out), "--base-url", server.base_url]
        assert wikitext.main(argv) == 0
        assert wikitext.main(argv) == 0
        assert server.total_requests == 1
    assert sorted(p.name for p in out.iterdir()) == [folder]
    for name, text in splits.items():
        assert (out / folder / name).read_text() == text


def test_wikitext_zip_slip_is_refused(tmp_path, monkeypatch, capsys):
    wikitext = load_script("download_wikitext")
    files = {"wikitext-2-raw-v1.zip": zip_bytes({"wikitext-2-raw/wiki.train.raw": "x",
                                                  "/etc/evil.raw": "owned"})}
    with serve_with_digests(monkeypatch, files) as server:
        argv = ["--variant", "2", "--out", str(tmp_path / "data"), "--base-url", server.base_url]
        assert wikitext.main(argv) == 2
    assert "refusing" in capsys.readouterr().err
    assert list((tmp_path / "data").iterdir()) == []


# ---------------------------------------------------------------------------- --force never costs the old copy


FORCE_CASES = [  # (script, argv after --out, the copy already there, the new archive the mirror serves)
    ("download_glue", ["--tasks", "RTE"], "glue/RTE/train.tsv", "RTE.zip",
     zip_bytes({"RTE/train.tsv": "index\tsentence1\tsentence2\tlabel\n0\tnew\tcopy\tentailment\n"})),
    ("download_wikitext", ["--variant", "2"], "wikitext-2-raw/wiki.train.raw", "wikitext-2-raw-v1.zip",
     zip_bytes({f"wikitext-2-raw/{name}": "new copy\n" for name in data_sources.WIKITEXT_SPLIT_FILES})),
]


@pytest.mark.parametrize("script, argv, kept, archive, new", FORCE_CASES, ids=[case[0] for case in FORCE_CASES])
def test_force_fetches_and_checks_the_new_copy_before_replacing_the_old(tmp_path, monkeypatch, capsys, script, argv,
                                                                         kept, archive, new):
    main = load_script(script).main
    out = tmp_path / "data"
    (out / kept).parent.mkdir(parents=True)
    (out / kept).write_text("the old copy\n")
    argv = [*argv, "--out", str(out), "--force"]
    with serve({f"/{archive}": b"a damaged archive"}) as server:  # its sha256 is not the official one
        assert main([*argv, "--base-url", server.base_url]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    monkeypatch.setenv("MINILTH_OFFLINE", "1")  # offline, with an empty cache
    assert main(argv) == 2
    assert "MINILTH_OFFLINE=1" in capsys.readouterr().err
    monkeypatch.delenv("MINILTH_OFFLINE")
    with serve_with_digests(monkeypatch, {archive: zip_bytes({"elsewhere/x.txt": "x"})}) as server:  # not its files
        assert main([*argv, "--base-url", server.base_url]) == 2
    assert "is this the right file?" in capsys.readouterr().err
    assert (out / kept).read_text() == "the old copy\n"  # after every failure
    assert sorted(path.name for path in (out / kept).parent.parent.iterdir()) == [(out / kept).parent.name]

    (tmp_path / "cache").rename(tmp_path / "old_cache")  # the wrong archive passed its (patched) digest
    with serve_with_digests(monkeypatch, {archive: new}) as server:
        assert main([*argv, "--base-url", server.base_url]) == 0
    assert "new" in (out / kept).read_text()
    assert sorted(path.name for path in (out / kept).parent.parent.iterdir()) == [(out / kept).parent.name]
