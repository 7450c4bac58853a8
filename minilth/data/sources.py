"""Where the paper's data sets come from, and fetching them into the layouts minilth reads.

    install_glue_task("RTE", Path("data/glue"))     # data/glue/RTE/{train,dev,test}.tsv
    install_squad(Path("data/squad"))                # data/squad/{train,dev}-v1.1.json
    install_wikitext(Path("data"), variant="103")    # data/wikitext-103-raw/wiki.{train,valid,test}.raw

Every file comes through minilth.download: a progress bar, the sha256 digest where one is
published, a temporary name renamed when complete, the archives kept in the minilth cache
($MINILTH_CACHE). Data already in place is returned without any network access.
$MINILTH_DATA_URL (or base_url) points every download at a mirror: one folder holding the same
file names as the official sources, e.g. RTE.zip, msr_paraphrase_train.txt, dev-v1.1.json,
wikitext-103-raw-v1.zip.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..checkpoints.download import cached_download, extract_archive, install_file
from ..errors import DataError
from ..files import write_text
from .tasks import TASKS, UnknownTaskError

DATA_URL_ENV = "MINILTH_DATA_URL"

GLUE_BASE_URL = "https://dl.fbaipublicfiles.com/glue/data"
MRPC_BASE_URL = "https://dl.fbaipublicfiles.com/senteval/senteval_data"
SQUAD_BASE_URL = "https://rajpurkar.github.io/SQuAD-explorer/dataset"
# The original S3 bucket (s3.amazonaws.com/research.metamind.io/wikitext) answers 403 since 2024
# (huggingface/tokenizers#1526, #1683; pytorch/text#2233, #2255); WikiText's author, Stephen Merity,
# serves the same zips under the same names here.
WIKITEXT_BASE_URL = "https://wikitext.smerity.com"

# GLUE task folder -> archive name (each archive holds one top folder of the task's name)
GLUE_ARCHIVES = {
    "CoLA": "CoLA.zip",
    "SST-2": "SST-2.zip",
    "QQP": "QQP-clean.zip",
    "STS-B": "STS-B.zip",
    "MNLI": "MNLI.zip",
    "QNLI": "QNLIv2.zip",
    "RTE": "RTE.zip",
    "WNLI": "WNLI.zip",
}
# MRPC is not hosted as a zip: as in nyu-mll/GLUE-baselines' download_glue_data.py, its files are
# built from the MSR paraphrase files and the standard list of dev ids. File name -> official base URL.
MRPC_SOURCES = {
    "msr_paraphrase_train.txt": MRPC_BASE_URL,
    "msr_paraphrase_test.txt": MRPC_BASE_URL,
    "mrpc_dev_ids.tsv": GLUE_BASE_URL,
}
MRPC_OUTPUTS = ("train.tsv", "dev.tsv", "test.tsv")
GLUE_TASKS = [task.folder for task in TASKS.values() if task.kind in ("classification", "regression")]

SQUAD_FILES = ["train-v1.1.json", "dev-v1.1.json"]

# WikiText variant -> (archive, its top folder, which is also the output folder)
WIKITEXT_VARIANTS = {
    "103": ("wikitext-103-raw-v1.zip", "wikitext-103-raw"),
    "2": ("wikitext-2-raw-v1.zip", "wikitext-2-raw"),
}
WIKITEXT_SPLIT_FILES = ["wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"]

# Digests as recorded in the download_checksums of Hugging Face datasets' glue, squad and wikitext
# dataset_infos.json: every file a mirror serves is checked against them.
SHA256 = {
    "CoLA.zip": "f212fcd832b8f7b435fb991f101abf89f96b933ab400603bf198960dfc32cbff",
    "SST-2.zip": "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa",
    "QQP-clean.zip": "40e7c862c04eb26ee04b67fd900e76c45c6ba8e6d8fab4f8f1f8072a1a3fbae0",
    "STS-B.zip": "e60a6393de5a8b5b9bac5020a1554b54e3691f9d600b775bd131e613ac179c85",
    "MNLI.zip": "e7c1d896d26ed6caf700110645df426cc2d8ebf02a5ab743d5a5c68ac1c83633",
    "QNLIv2.zip": "e634e78627a29adaecd4f955359b22bf5e70f2cbd93b493f2d624138a0c0e5f5",
    "RTE.zip": "6bf86de103ecd335f3441bd43574d23fef87ecc695977a63b82d5efb206556ee",
    "WNLI.zip": "ae0e8e4d16f4d46d4a0a566ec7ecceccfd3fbfaa4a7a4b4e02848c0f2561ac46",
    "mrpc_dev_ids.tsv": "971d7767d81b997fd9060ade0ec23c4fc31cbb226a55d1bd4a1bac474eb81dc7",
    "msr_paraphrase_train.txt": "60a9b09084528f0673eedee2b69cb941920f0b8cd0eeccefc464a98768457f89",
    "msr_paraphrase_test.txt": "a04e271090879aaba6423d65b94950c089298587d9c084bf9cd7439bd785f784",
    "train-v1.1.json": "3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955",
    "dev-v1.1.json": "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",
    "wikitext-103-raw-v1.zip": "91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794",
    "wikitext-2-raw-v1.zip": "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
}


def source_url(official_base: str, name: str, base_url: str | None = None) -> str:
    """Returns the URL of a file: under base_url, else under $MINILTH_DATA_URL, else under its official folder."""
    base = base_url or os.environ.get(DATA_URL_ENV) or official_base
    return f"{base.rstrip('/')}/{name}"


def _fetch(official_base: str, name: str, subdir: str, base_url: str | None) -> Path:
    """Returns the cached copy of a source file, downloading it (checked against its digest) if absent."""
    return cached_download(source_url(official_base, name, base_url), sha256=SHA256.get(name), subdir=subdir)


# ---------------------------------------------------------------------------------------------
# GLUE


def resolve_glue_tasks(names: list[str]) -> list[str]:
    """Returns the official folder names of GLUE tasks named in any spelling ('sst2' -> 'SST-2'; 'all': all)."""
    by_key = {_key(task): task for task in GLUE_TASKS} | {"sst": "SST-2", "sts": "STS-B"}
    wanted = [part for name in names for part in name.split(",") if part.strip()]
    if any(_key(name) == "all" for name in wanted):
        return list(GLUE_TASKS)
    tasks = []
    for name in wanted:
        if _key(name) not in by_key:
            raise UnknownTaskError(f"unknown GLUE task {name!r}; choose from {', '.join(GLUE_TASKS)} or all")
        if by_key[_key(name)] not in tasks:
            tasks.append(by_key[_key(name)])
    return tasks


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def install_glue_task(task: str, glue_dir: Path, base_url: str | None = None, force: bool = False) -> Path:
    """Returns glue_dir/<task> after downloading and unpacking the task: nothing to do if its folder exists, unless
    `force` (a damaged file), which unpacks it afresh from the cached archive (checked against its digest)."""
    if task == "MRPC":
        return install_mrpc(glue_dir, base_url, force)
    target = Path(glue_dir) / task
    if target.is_dir() and not force:
        return target
    archive = _fetch(GLUE_BASE_URL, GLUE_ARCHIVES[task], "glue", base_url)  # the old copy stays until this is whole
    return extract_archive(archive, target, member_root=task, replace=force)


def install_mrpc(glue_dir: Path, base_url: str | None = None, force: bool = False) -> Path:
    """Returns glue_dir/MRPC after building train/dev/test.tsv from the MSR files (nothing to do if present, unless
    `force`)."""
    target = Path(glue_dir) / "MRPC"
    if all((target / name).is_file() for name in MRPC_OUTPUTS) and not force:
        return target
    sources = {name: _fetch(official, name, "glue", base_url) for name, official in MRPC_SOURCES.items()}
    outputs = format_mrpc(sources["msr_paraphrase_train.txt"], sources["msr_paraphrase_test.txt"],
                          sources["mrpc_dev_ids.tsv"])
    for name in MRPC_OUTPUTS:
        write_text(target / name, outputs[name])
    return target


def format_mrpc(train_file: Path, test_file: Path, dev_ids_file: Path) -> dict[str, str]:
    """Returns the texts of MRPC's train.tsv, dev.tsv and test.tsv, as download_glue_data.py writes them.

    train/dev keep the MSR header line (with its byte-order mark) and split the MSR training
    pairs by the official dev ids; test.tsv numbers the MSR test pairs and drops their labels.
    """
    with open(dev_ids_file, encoding="utf-8") as f:
        dev_ids = {tuple(line.strip().split("\t")) for line in f if line.strip()}
    with open(train_file, encoding="utf-8") as f:
        header, *rows = f.readlines()
    train, dev = [header], [header]
    for row in rows:
        label, id1, id2, s1, s2 = _msr_fields(row, train_file)
        (dev if (id1, id2) in dev_ids else train).append(f"{label}\t{id1}\t{id2}\t{s1}\t{s2}\n")
    with open(test_file, encoding="utf-8") as f:
        test_rows = f.readlines()[1:]
    test = ["index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"]
    for index, row in enumerate(test_rows):
        _, id1, id2, s1, s2 = _msr_fields(row, test_file)
        test.append(f"{index}\t{id1}\t{id2}\t{s1}\t{s2}\n")
    return {"train.tsv": "".join(train), "dev.tsv": "".join(dev), "test.tsv": "".join(test)}


def _msr_fields(row: str, source: Path) -> list[str]:
    fields = row.strip().split("\t")
    if len(fields) != 5:
        raise DataError(f"{source}: expected 5 tab-separated fields, got {len(fields)} in {row.strip()[:60]!r}; "
                        "delete the file from the cache and run again")
    return fields


# ---------------------------------------------------------------------------------------------
# SQuAD v1.1


def install_squad(squad_dir: Path, base_url: str | None = None, force: bool = False) -> Path:
    """Returns squad_dir holding train-v1.1.json and dev-v1.1.json, downloading the missing ones (all, with `force`)."""
    squad_dir = Path(squad_dir)
    for name in SQUAD_FILES:
        dest = squad_dir / name
        if force or not dest.is_file():
            install_file(_fetch(SQUAD_BASE_URL, name, "squad", base_url), dest)
    return squad_dir


# ---------------------------------------------------------------------------------------------
# WikiText


def install_wikitext(data_root: Path, variant: str = "103", base_url: str | None = None, force: bool = False) -> Path:
    """Returns data_root/wikitext-<variant>-raw holding wiki.{train,valid,test}.raw, downloading it if absent (unpacked
    afresh with `force`)."""
    archive_name, folder = WIKITEXT_VARIANTS[variant]
    target = Path(data_root) / folder
    if force or not target.is_dir():
        archive = _fetch(WIKITEXT_BASE_URL, archive_name, "wikitext", base_url)  # the old copy stays until this is whole
        extract_archive(archive, target, member_root=folder, replace=force, required=tuple(WIKITEXT_SPLIT_FILES))
    missing = [name for name in WIKITEXT_SPLIT_FILES if not (target / name).is_file()]
    if missing:
        raise DataError(f"{target} lacks {', '.join(missing)}; delete the folder and run again")
    return target
