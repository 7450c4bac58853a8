"""Download the GLUE tasks into <out>/glue/<Task>/, the layout of the official GLUE download script.

    python data_scripts/download_glue.py                      # all tasks into ./data/glue
    python data_scripts/download_glue.py --tasks RTE MRPC --out data

The task zips are the ones of nyu-mll/GLUE-baselines' download_glue_data.py. MRPC is not hosted
as a zip: as in that script, train.tsv and dev.tsv are built from the MSR paraphrase training
file and the standard list of dev ids, and test.tsv from the MSR test file. Archives are kept
in the minilth cache ($MINILTH_CACHE, default ~/.cache/minilth); tasks already unpacked are
skipped without any network access.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from minilth.download import cached_download, extract_archive
from minilth.errors import DataError, MinilthError, run_cli

GLUE_BASE_URL = "https://dl.fbaipublicfiles.com/glue/data"
MRPC_BASE_URL = "https://dl.fbaipublicfiles.com/senteval/senteval_data"

# task folder -> archive name (each archive holds one top folder of the task's name)
TASK_ARCHIVES = {
    "CoLA": "CoLA.zip",
    "SST-2": "SST-2.zip",
    "QQP": "QQP-clean.zip",
    "STS-B": "STS-B.zip",
    "MNLI": "MNLI.zip",
    "QNLI": "QNLIv2.zip",
    "RTE": "RTE.zip",
    "WNLI": "WNLI.zip",
}
MRPC_FILES = {  # file name -> official base URL
    "msr_paraphrase_train.txt": MRPC_BASE_URL,
    "msr_paraphrase_test.txt": MRPC_BASE_URL,
    "mrpc_dev_ids.tsv": GLUE_BASE_URL,
}
# Digests as recorded in the download_checksums of Hugging Face datasets' glue/dataset_infos.json.
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
}
ALL_TASKS = ["CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI"]
MRPC_OUTPUTS = ("train.tsv", "dev.tsv", "test.tsv")


class UnknownTaskError(MinilthError, ValueError):
    """A --tasks name that is not a GLUE task."""


def resolve_tasks(names: list[str]) -> list[str]:
    """Return the official folder names for task names given in any case, e.g. 'sst2' -> 'SST-2'."""
    by_key = {_key(task): task for task in ALL_TASKS} | {"sst": "SST-2", "sts": "STS-B"}
    wanted = [part for name in names for part in name.split(",") if part.strip()]
    if any(_key(name) == "all" for name in wanted):
        return list(ALL_TASKS)
    tasks = []
    for name in wanted:
        if _key(name) not in by_key:
            raise UnknownTaskError(f"unknown GLUE task {name!r}; choose from {', '.join(ALL_TASKS)} or all")
        if by_key[_key(name)] not in tasks:
            tasks.append(by_key[_key(name)])
    return tasks


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


def install_task(task: str, glue_dir: Path, base_url: str | None = None) -> Path:
    """Return glue_dir/<task> after downloading and unpacking the task (nothing to do if present)."""
    if task == "MRPC":
        return install_mrpc(glue_dir, base_url)
    target = glue_dir / task
    if target.is_dir():
        return target
    archive_name = TASK_ARCHIVES[task]
    url = f"{base_url or GLUE_BASE_URL}/{archive_name}"
    archive = cached_download(url, sha256=SHA256.get(archive_name), subdir="glue")
    return extract_archive(archive, target, member_root=task)


def install_mrpc(glue_dir: Path, base_url: str | None = None) -> Path:
    """Return glue_dir/MRPC after building train/dev/test.tsv from the MSR files (nothing to do if present)."""
    target = glue_dir / "MRPC"
    if all((target / name).is_file() for name in MRPC_OUTPUTS):
        return target
    sources = {name: cached_download(f"{base_url or official}/{name}", sha256=SHA256.get(name), subdir="glue")
               for name, official in MRPC_FILES.items()}
    target.mkdir(parents=True, exist_ok=True)
    outputs = format_mrpc(sources["msr_paraphrase_train.txt"], sources["msr_paraphrase_test.txt"],
                          sources["mrpc_dev_ids.tsv"])
    for name in MRPC_OUTPUTS:
        _write_text_atomic(target / name, outputs[name])
    return target


def format_mrpc(train_file: Path, test_file: Path, dev_ids_file: Path) -> dict[str, str]:
    """Return the texts of MRPC's train.tsv, dev.tsv and test.tsv, as download_glue_data.py writes them.

    train/dev keep the MSR header line (with its byte-order mark) and split the MSR training
    pairs by the official dev ids; test.tsv numbers the MSR test pairs and drops their labels.
    """
    with open(dev_ids_file, encoding="utf-8") as f:
        dev_ids = {tuple(line.strip().split("\t")) for line in f if line.strip()}
    with open(train_file, encoding="utf-8") as f:
        header, *rows = f.readlines()
    train, dev = [header], [header]
    for row in rows:
        label, id1, id2, s1, s2 = _fields(row, train_file)
        (dev if (id1, id2) in dev_ids else train).append(f"{label}\t{id1}\t{id2}\t{s1}\t{s2}\n")
    with open(test_file, encoding="utf-8") as f:
        test_rows = f.readlines()[1:]
    test = ["index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"]
    for index, row in enumerate(test_rows):
        _, id1, id2, s1, s2 = _fields(row, test_file)
        test.append(f"{index}\t{id1}\t{id2}\t{s1}\t{s2}\n")
    return {"train.tsv": "".join(train), "dev.tsv": "".join(dev), "test.tsv": "".join(test)}


def _fields(row: str, source: Path) -> list[str]:
    fields = row.strip().split("\t")
    if len(fields) != 5:
        raise DataError(f"{source}: expected 5 tab-separated fields, got {len(fields)} in {row.strip()[:60]!r}; "
                           "delete the file from the cache and run again")
    return fields


def _write_text_atomic(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="\n", dir=path.parent,
                                     prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["all"],
                        help=f"tasks to fetch, space or comma separated: {', '.join(ALL_TASKS)} (default: all)")
    parser.add_argument("--out", type=Path, default=Path("data"),
                        help="data folder; tasks go to <out>/glue/<Task> (default: ./data)")
    parser.add_argument("--base-url", default=None,
                        help="a mirror holding every file (zips, MSR files, mrpc_dev_ids.tsv) in one folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Download the requested GLUE tasks; return the exit status (2 with a one-line message on error)."""
    args = parse_args(argv)
    return run_cli(lambda: install_all(args), "run it again: finished files are kept, the rest resumes")


def install_all(args) -> int:
    for task in resolve_tasks(args.tasks):
        print(f"{task}: {install_task(task, args.out / 'glue', args.base_url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
