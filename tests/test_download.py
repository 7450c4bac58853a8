"""minilth.checkpoints.download against a local HTTP server: resume, checksums, cache, offline mode, safe unpacking."""
import ctypes
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from minilth.checkpoints import download as dl
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


# ---------------------------------------------------------------------------- a cache that cannot be written


def weights_cli_with_cache(cache, **run_options) -> subprocess.CompletedProcess:
    """`python -m minilth.weights` on a known name, downloading into MINILTH_CACHE=cache.

    Nothing listens at the hub's address: the cache must be refused before any request.
    """
    env = {**os.environ, "MINILTH_CACHE": str(cache), "MINILTH_HUB_URL": "http://127.0.0.1:9"}
    env.pop("MINILTH_OFFLINE", None)
    return subprocess.run([sys.executable, "-m", "minilth.weights", "bert_uncased_L-2_H-128_A-2"], env=env,
                          capture_output=True, text=True, **run_options)


def test_cache_that_is_a_file_is_one_line_naming_the_variable(tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("not a folder")
    result = weights_cli_with_cache(cache)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: MINILTH_CACHE={cache} is a file, not a folder: set MINILTH_CACHE to a folder you can write to"]
    assert cache.read_text() == "not a folder" and list(tmp_path.iterdir()) == [cache]


def test_cache_under_a_file_is_one_line_naming_the_variable(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("MINILTH_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(DownloadError) as err:
        dl.cached_download("http://127.0.0.1:9/glue/RTE.zip", subdir="glue")
    assert str(err.value) == (f"MINILTH_CACHE={tmp_path / 'file' / 'cache'} cannot be written (Not a directory): "
                              "set MINILTH_CACHE to a folder you can write to")


PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1  # from <linux/prctl.h> and <linux/capability.h>


def bound_by_permission_bits():
    """preexec_fn that makes a child obey permission bits even when the tests run as root.

    Root writes into a chmod 0o500 folder anyway, through the CAP_DAC_OVERRIDE capability.
    Dropped from the bounding set between fork and exec, the child runs as root without it and
    the folder is as read-only for it as for anyone else: the test exercises the real failing
    write, nothing simulated. For any other user chmod alone does it and nothing is dropped.
    """
    if os.geteuid() == 0 and ctypes.CDLL(None, use_errno=True).prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE) failed")


def test_read_only_cache_is_one_line_naming_the_variable(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    try:
        probe = subprocess.run([sys.executable, "-c", f"open({str(cache / 'probe')!r}, 'w')"],
                               preexec_fn=bound_by_permission_bits, capture_output=True, text=True)
        assert "PermissionError" in probe.stderr, "the folder must be read-only for the child, else this proves nothing"
        result = weights_cli_with_cache(cache, preexec_fn=bound_by_permission_bits)
    finally:
        cache.chmod(0o700)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: MINILTH_CACHE={cache} cannot be written (Permission denied): "
        "set MINILTH_CACHE to a folder you can write to"]
    assert list(cache.iterdir()) == []


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


def make_ordered_tar(path, entries: list[tuple[str, bytes | str]]):
    """A tar of files (bytes) and symlinks (str: the link's text), in the order given."""
    with tarfile.open(path, "w") as tf:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tf.addfile(info)
            else:
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    return path


LINKS_LEADING_OUT_THROUGH_LINKS = {
    "the issue's chain": [("d/x.txt", b"x"), ("a", "."), ("b", "a/..")],
    "a longer chain": [("a", "."), ("b", "a/a/a/sub/../..")],
    "down then up twice": [("sub/x.txt", b"x"), ("sub/l", ".."), ("sub/m", "l/..")],
    "an earlier link redirected by a later one": [("c", "x/.."), ("x", ".")],
    "a loop": [("p", "q"), ("q", "p")],
}


@pytest.mark.parametrize("entries", LINKS_LEADING_OUT_THROUGH_LINKS.values(), ids=LINKS_LEADING_OUT_THROUGH_LINKS)
def test_tar_links_leading_out_through_other_links_are_refused(tmp_path, entries):
    archive = make_ordered_tar(tmp_path / "chain.tar", entries)
    with pytest.raises(DownloadError, match="that, through other links, leads outside the folder or in a circle; "
                                            "refusing to unpack"):
        dl.extract_archive(archive, tmp_path / "out" / "target")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("evil", ["b/evil.txt", "b/new/evil.txt"])
def test_tar_file_written_through_a_chained_link_is_refused_before_any_write(tmp_path, evil):
    archive = make_ordered_tar(tmp_path / "chain.tar", [("a", "."), ("b", "a/.."), (evil, b"owned")])
    with pytest.raises(DownloadError, match=f"member '{evil}' goes through a link that leaves the folder"):
        dl.extract_archive(archive, tmp_path / "out" / "target")
    assert list((tmp_path / "out").iterdir()) == []  # neither evil.txt nor the folder new/ was made there


def test_tar_chained_links_that_stay_inside_are_kept(tmp_path):
    archive = make_ordered_tar(tmp_path / "ok.tar", [("sub/x.txt", b"x"), ("a", "."), ("b", "a/sub"),
                                                     ("sub/up", ".."), ("c", "sub/up/b/x.txt")])
    target = dl.extract_archive(archive, tmp_path / "out")
    assert (target / "b" / "x.txt").read_bytes() == b"x" and (target / "c").read_bytes() == b"x"


def test_tar_symlink_inside_is_kept(tmp_path):
    archive = make_tar(tmp_path / "ok.tar", {"d/a.txt": b"a"}, symlinks={"d/b.txt": "a.txt"})
    target = dl.extract_archive(archive, tmp_path / "out", member_root="d")
    assert os.readlink(target / "b.txt") == "a.txt" and (target / "b.txt").read_bytes() == b"a"


def test_unknown_archive_type_is_refused(tmp_path):
    archive = tmp_path / "data.rar"
    archive.write_bytes(b"x")
    with pytest.raises(DownloadError, match="unsupported archive type"):
        dl.extract_archive(archive, tmp_path / "out")
