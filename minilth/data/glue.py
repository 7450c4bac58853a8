"""GLUE readers for the files of the official GLUE distribution, quirks included, and their features.

Quirks handled here (the task table in tasks.py names each task's columns):
- CoLA train.tsv / dev.tsv have no header row (source, label, original label mark, sentence);
  its test.tsv has one (index, sentence). A file has a header when its first row holds the
  task's text column names.
- MRPC's header starts with a UTF-8 byte-order mark ("\\ufeffQuality"): files are read as utf-8-sig.
- STS-B labels are float scores (column "score"); MNLI's label column is "gold_label" and its dev
  files are dev_matched.tsv / dev_mismatched.tsv.
- QQP's training set has rows with missing fields: like the reference code, they are skipped,
  counted, and reported in one warning. Anywhere else a malformed row is an error.
- Test files have no label column: their examples have label None and their features no "labels".
- Fields are split on tabs only (csv.QUOTE_NONE): GLUE sentences contain unbalanced quotes.
"""
from __future__ import annotations

import contextlib
import csv
import itertools
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from tqdm.auto import tqdm

from ..errors import DataError
from .tasks import Task, get_task

logger = logging.getLogger(__name__)

ENCODE_CHUNK = 8192  # examples per tokenizer call: big enough to batch well, small enough for a progress bar


@dataclass
class Example:
    guid: str  # "<split>-<line number>", so a problem can be found in the file
    text_a: str
    text_b: Optional[str]
    label: Union[str, float, None]  # label string (classification), score (STS-B), None (test files)


@dataclass
class GlueDataset:
    task: Task
    split: str
    examples: list  # list[Example]
    features: list  # one dict per example: input_ids, token_type_ids, attention_mask[, labels]
    pad_id: int = 0
    skipped_rows: int = 0  # malformed rows skipped (QQP only)

    def __len__(self) -> int:
        return len(self.features)


def load_glue(task: Task | str, path: str | Path, tokenizer, split: str = "train",
              max_examples: int | None = None, max_length: int | None = None, progress: bool = True) -> GlueDataset:
    """Returns a GlueDataset of the file's examples and their features.

    max_examples keeps the first N examples in file order (after skipped rows), for quick runs;
    max_length defaults to the task's (128).
    """
    task = get_task(task)
    examples, skipped = read_examples(task, path, split=split, max_examples=max_examples)
    features = featurize(task, examples, tokenizer, max_length=max_length or task.max_length, progress=progress)
    return GlueDataset(task, split, examples, features, pad_id=tokenizer.pad_id, skipped_rows=skipped)


def read_examples(task: Task | str, path: str | Path, split: str = "train",
                  max_examples: int | None = None) -> tuple[list[Example], int]:
    """Returns (examples, number of malformed rows skipped) of a GLUE TSV file.

    Labels are checked against the task's label set (or parsed as floats for STS-B); a file
    without the label column is read as a test file (labels None), which only test splits may be.
    """
    task = get_task(task)
    path = Path(path)
    if max_examples is not None and max_examples < 1:
        raise DataError(f"max_examples must be at least 1, got {max_examples}")
    with contextlib.closing(_rows(task, path)) as stream:  # closed even when max_examples stops early
        columns, rows = _header(task, stream)
        if not columns:
            raise DataError(f"{path} is empty: download {task.display_name} again with "
                            f"`{task.data_script} --force`")
        indices = _column_indices(task, columns, path, split)
        examples, skipped = [], 0
        for line, row in rows:
            if len(row) != len(columns):
                if task.skip_malformed_rows and len(row) < len(columns):
                    skipped += 1
                    continue
                raise DataError(f"{path}:{line}: {len(row)} tab-separated fields where the header has "
                                f"{len(columns)}: the file is damaged; download it again with "
                                f"`{task.data_script} --force`")
            examples.append(_example(task, row, indices, f"{split}-{line}", path, line))
            if max_examples is not None and len(examples) == max_examples:
                break
    if skipped:
        logger.warning("%s: skipped %d malformed rows with missing fields (as the reference code does)",
                       path, skipped)
    if not examples:
        raise DataError(f"{path} holds no examples: the file is empty or truncated; "
                        f"download it again with `{task.data_script} --force`")
    return examples, skipped


def _rows(task: Task, path: Path):
    """Yields (1-based line number, fields) of each non-blank line, streaming (MNLI's train file is 300 MB)."""
    if not path.is_file():
        raise DataError(f"{path} not found: download {task.display_name} with `{task.data_script}`")
    return _stream(path)


def _stream(path: Path):
    csv.field_size_limit(sys.maxsize)  # a few GLUE fields are long
    with open(path, encoding="utf-8-sig", newline="") as f:  # utf-8-sig drops MRPC's byte-order mark
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            for row in reader:
                if row:
                    yield reader.line_num, row
        except csv.Error as error:
            raise DataError(f"{path}:{reader.line_num + 1}: unreadable ({error}); is it a UTF-8 TSV file?") from None
        except UnicodeDecodeError as error:  # raised for a whole block of text, ahead of the csv reader's line
            line, error = _first_non_utf8_line(path) or (reader.line_num + 1, error)
            raise DataError(f"{path}:{line}: not UTF-8 ({error}): save the file as UTF-8, or download it "
                            "again") from None


def _first_non_utf8_line(path: Path) -> tuple[int, UnicodeDecodeError] | None:
    """(1-based line number, decoding error with its position in that line) of the first line that is not UTF-8.

    latin-1 reads any byte as one character and splits lines as the csv reader does (newline="");
    no UTF-8 character holds a newline byte, so every line decodes on its own.
    """
    with open(path, encoding="latin-1", newline="") as f:
        for number, line in enumerate(f, 1):
            try:
                line.encode("latin-1").decode("utf-8")
            except UnicodeDecodeError as error:
                return number, error
    return None  # the file changed since it failed to decode


def _header(task: Task, rows) -> tuple[list[str], object]:
    """The file's column names, and the rows after the header (all of them for a header-less file)."""
    first = next(rows, None)
    if first is None:
        return [], rows
    if task.headerless_columns and not set(task.text_columns) <= set(first[1]):
        return list(task.headerless_columns), itertools.chain([first], rows)  # CoLA train/dev: no header
    return first[1], rows


def _column_indices(task: Task, columns: list[str], path: Path, split: str) -> dict:
    """Positions of the text and label columns in this file's header; label None for test files."""
    missing = [c for c in task.text_columns if c not in columns]
    if missing:
        raise DataError(f"{path}:1: no column {missing[0]!r} in the header {columns}: "
                        f"is this {task.display_name}'s file? download it again with "
                        f"`{task.data_script} --force`")
    indices = {"text": [columns.index(c) for c in task.text_columns], "label": None}
    if task.label_column in columns:
        indices["label"] = len(columns) - 1 - columns[::-1].index(task.label_column)  # MNLI: gold_label is last
    elif not split.startswith("test"):
        raise DataError(f"{path}:1: no label column {task.label_column!r} in the header {columns}, "
                        f"but '{split}' is not a test split")
    return indices


def _example(task: Task, row: list[str], indices: dict, guid: str, path: Path, line: int) -> Example:
    """One Example, its label checked against the task (file:line in the error when it does not fit)."""
    texts = [row[i] for i in indices["text"]]
    label = None if indices["label"] is None else row[indices["label"]].strip()
    if label is not None and task.labels is None:
        low, high = task.score_range
        try:
            score = float(label)
        except ValueError:
            score = math.nan
        if not low <= score <= high:  # nan too: a damaged score would train a diverging loss
            raise DataError(f"{path}:{line}: score {label!r} is not a number from {low:g} to {high:g}, "
                            f"{task.display_name}'s scale: the file is damaged; download it again with "
                            f"`{task.data_script} --force`")
        label = score
    elif label is not None and label not in task.labels:
        raise DataError(f"{path}:{line}: label {label!r} is not one of {task.display_name}'s labels "
                        f"{list(task.labels)}")
    return Example(guid, texts[0], texts[1] if len(texts) > 1 else None, label)


def featurize(task: Task | str, examples: list[Example], tokenizer, max_length: int = 128,
              progress: bool = True) -> list[dict]:
    """Returns one feature dict per example: unpadded input_ids, token_type_ids, attention_mask, and
    "labels" (the label's index into task.labels, or the float score) unless the example is unlabelled.
    """
    task = get_task(task)
    label_ids = task.label_ids
    features = []
    with tqdm(total=len(examples), desc=f"tokenize {task.display_name}", unit="ex",
              disable=not progress or len(examples) <= ENCODE_CHUNK, leave=False) as bar:
        for start in range(0, len(examples), ENCODE_CHUNK):
            chunk = examples[start:start + ENCODE_CHUNK]
            pairs = chunk[0].text_b is not None
            encoded = tokenizer.encode([e.text_a for e in chunk], [e.text_b for e in chunk] if pairs else None,
                                       max_length=max_length)
            for i, example in enumerate(chunk):
                feature = {key: encoded[key][i] for key in ("input_ids", "token_type_ids", "attention_mask")}
                if example.label is not None:
                    feature["labels"] = example.label if task.labels is None else label_ids[example.label]
                features.append(feature)
            bar.update(len(chunk))
    return features
