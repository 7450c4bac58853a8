"""minilth.download against a local HTTP server: resume, checksums, cache, offline mode, safe unpacking."""
import hashlib
import io
import os
import tarfile
import zipfile

import pytest

from minilth import download as dl
from minilth.errors import DownloadError, MinilthError
from http_server import serve

PAYLOAD = bytes(range(256)) * 4000  # 1,024,000 bytes: several chunks
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Each test gets its own cache, online, with no waiting between retries."""
    monkeypatch.setenv("MINILTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINILTH_OFFLINE", raising=False)
    monkeypatch.setattr(dl, "RETRY_WAIT_S", 0.0)
    return tmp_path / "cache"


def test_full_download_with_correct_sha256(tmp_path):
    with serve({"/f.bin": PAYLOAD}) as server:
        path = dl.download(server.url("/f.bin"), tmp_path / "out" / "f.bin", sha256=PAYLOAD_SHA)
    assert path == tmp_path / "out" / "f.bin"
    assert path.read_bytes() == PAYLOAD
    assert not dl.part_path(path).exists()
    assert server.requests["/f.bin"] == 1
    assert server.ranges["/f.bin"] == []


def test_cut_connection_is_resumed_with_a_range_request(tmp_path):
    cut = 300_000
    with serve({"/f.bin": PAYLOAD}, cut_after={"/f.bin": cut}) as server:
        path = dl.download(server.url("/f.bin"), tmp_path / "f.bin", sha256=PAYLOAD_SHA)
    assert path.read_bytes() == PAYLOAD
    assert server.requests["/f.bin"] == 2
    # Resumed from the last whole network chunk before the cut, not from zero.
    (range_header,) = server.ranges["/f.bin"]
    resumed_at = int(range_header.removeprefix("bytes=").removesuffix("-"))
    assert cut - dl.NETWORK_CHUNK_BYTES < resumed_at <= cut


def test_existing_part_file_is_resumed(tmp_path):
    dest = tmp_path / "f.bin"
    dl.part_path(dest).write_bytes(PAYLOAD[:12345])
    with serve({"/f.bin": PAYLOAD}) as server:
        dl.download(server.url("/f.bin"), dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert server.ranges["/f.bin"] == ["bytes=12345-"]


def test_complete_part_file_is_finished_without_a_body(tmp_path):
    dest = tmp_path / "f.bin"
    dl.part_path(dest).write_bytes(PAYLOAD)  # cut just before the rename
    with serve({"/f.bin": PAYLOAD}) as server:
        dl.download(server.url("/f.bin"), dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD and not dl.part_path(dest).exists()
    assert server.ranges["/f.bin"] == [f"bytes={len(PAYLOAD)}-"]  # answered 416, nothing sent


def test_server_ignoring_range_restarts_from_zero(tmp_path):
    dest = tmp_path / "f.bin"
    dl.part_path(dest).write_bytes(b"stale bytes that must not stay in front")
    with serve({"/f.bin": PAYLOAD}, honor_range=False) as server:
        dl.download(server.url("/f.bin"), dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests["/f.bin"] == 1


def test_checksum_mismatch_leaves_nothing_in_the_cache(isolated_cache):
    wrong = "0" * 64
    with serve({"/data/f.bin": PAYLOAD}) as server:
        url = server.url("/data/f.bin")
        with pytest.raises(DownloadError) as err:
            dl.cached_download(url, sha256=wrong, subdir="x")
    message = str(err.value)
    assert "\n" not in message
    assert url in message and wrong in message and PAYLOAD_SHA in message
    dest = isolated_cache / "x" / "f.bin"
    assert not dest.exists() and not dl.part_path(dest).exists()
    assert list((isolated_cache / "x").iterdir()) == []


def test_http_404_is_a_one_line_error(tmp_path):
    with serve({}) as server:
        url = server.url("/missing.zip")
        with pytest.raises(DownloadError) as err:
            dl.download(url, tmp_path / "missing.zip")
    assert isinstance(err.value, MinilthError)
    assert url in str(err.value) and "404" in str(err.value) and "\n" not in str(err.value)
    assert server.requests["/missing.zip"] == 1  # a 404 is not retried
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_fails_after_retries(tmp_path):
    with serve({}) as server:
        url = server.url("/gone.bin")
    # The server is stopped: every attempt is refused.
    with pytest.raises(DownloadError) as err:
        dl.download(url, tmp_path / "gone.bin")
    assert f"after {dl.MAX_ATTEMPTS} attempts" in str(err.value)


def test_second_call_makes_no_request(isolated_cache):
    with serve({"/a/model.bin": PAYLOAD}) as server:
        url = server.url("/a/model.bin")
        first = dl.cached_download(url, sha256=PAYLOAD_SHA, subdir="ckpt")
        second = dl.cached_download(url, sha256=PAYLOAD_SHA, subdir="ckpt")
    assert first == second == isolated_cache / "ckpt" / "model.bin"
    assert server.total_requests == 1


def test_existing_file_with_wrong_digest_is_fetched_again(tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"corrupt")
    with serve({"/f.bin": PAYLOAD}) as server:
        dl.download(server.url("/f.bin"), dest, sha256=PAYLOAD_SHA)
    assert dest.read_bytes() == PAYLOAD


def test_cached_download_filename_and_cache_dir(isolated_cache, monkeypatch):
    assert dl.cache_dir() == isolated_cache
    monkeypatch.delenv("MINILTH_CACHE")
    assert dl.cache_dir() == dl.Path.home() / ".cache" / "minilth"
    assert dl.url_filename("https://h/x/wikitext-2%2Braw.zip?x=1") == "wikitext-2+raw.zip"


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_offline_miss_is_a_clear_error(isolated_cache, monkeypatch, value):
    monkeypatch.setenv("MINILTH_OFFLINE", value)
    url = "http://127.0.0.1:9/never/asked.zip"  # nothing listens: any request would fail differently
    with pytest.raises(DownloadError) as err:
        dl.cached_download(url, subdir="glue")
    message = str(err.value)
    assert "MINILTH_OFFLINE=1" in message and str(isolated_cache / "glue" / "asked.zip") in message
    assert "run once online" in message and "\n" not in message


def test_offline_hit_needs_no_network(monkeypatch):
    with serve({"/f.bin": PAYLOAD}) as server:
        url = server.url("/f.bin")
        online = dl.cached_download(url, sha256=PAYLOAD_SHA)
        monkeypatch.setenv("MINILTH_OFFLINE", "1")
        offline = dl.cached_download(url, sha256=PAYLOAD_SHA)
    assert offline == online and offline.read_bytes() == PAYLOAD
    assert server.total_requests == 1


# ---------------------------------------------------------------------------- archives


def make_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path, members: dict[str, bytes], symlinks: dict[str, str] | None = None):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return path


def test_zip_is_extracted_and_second_call_is_a_no_op(tmp_path):
    archive = make_zip(tmp_path / "RTE.zip", {"RTE/train.tsv": b"a\tb\n", "RTE/sub/dev.tsv": b"c\n"})
    target = tmp_path / "out" / "RTE"
    assert dl.extract_archive(archive, target) == target
    assert (target / "RTE" / "train.tsv").read_bytes() == b"a\tb\n"
    assert (target / "RTE" / "sub" / "dev.tsv").read_bytes() == b"c\n"
    archive.unlink()  # a complete target is returned without reading the archive
    assert dl.extract_archive(archive, target) == target
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["RTE"]


def test_member_root_strips_the_top_folder(tmp_path):
    archive = make_tar(tmp_path / "w.tar.gz", {"wt/wiki.train.raw": b"t", "wt/wiki.test.raw": b"x",
                                                "__MACOSX/._junk": b"j"})
    target = dl.extract_archive(archive, tmp_path / "wikitext", member_root="wt")
    assert sorted(p.name for p in target.iterdir()) == ["wiki.test.raw", "wiki.train.raw"]
    with pytest.raises(DownloadError, match="no folder 'other'"):
        dl.extract_archive(archive, tmp_path / "other", member_root="other")


@pytest.mark.parametrize("evil", ["../evil.txt", "RTE/../../evil.txt", "/tmp/evil.txt"])
def test_zip_slip_is_refused_and_nothing_extracted(tmp_path, evil):
    archive = make_zip(tmp_path / "bad.zip", {"RTE/train.tsv": b"ok", evil: b"owned"})
    out = tmp_path / "out"
    with pytest.raises(DownloadError) as err:
        dl.extract_archive(archive, out / "RTE")
    assert "refusing" in str(err.value) and repr(evil) in str(err.value)
    assert not (out / "RTE").exists()
    assert list(out.iterdir()) == []  # no half-extracted staging folder either
    assert not (tmp_path / "evil.txt").exists()


def test_tar_symlink_leading_outside_is_refused(tmp_path):
    archive = make_tar(tmp_path / "bad.tgz", {"d/a.txt": b"a", "d/link/x.txt": b"owned"},
                       symlinks={"d/link": "../../.."})
    with pytest.raises(DownloadError, match="is a link to"):
        dl.extract_archive(archive, tmp_path / "out" / "d")
    assert list((tmp_path / "out").iterdir()) == []


def test_tar_symlink_inside_is_kept(tmp_path):
    archive = make_tar(tmp_path / "ok.tar", {"d/a.txt": b"a"}, symlinks={"d/b.txt": "a.txt"})
    target = dl.extract_archive(archive, tmp_path / "out", member_root="d")
    assert os.readlink(target / "b.txt") == "a.txt" and (target / "b.txt").read_bytes() == b"a"


def test_unknown_archive_type_is_refused(tmp_path):
    archive = tmp_path / "data.rar"
    archive.write_bytes(b"x")
    with pytest.raises(DownloadError, match="unsupported archive type"):
        dl.extract_archive(archive, tmp_path / "out")
