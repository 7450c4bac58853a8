"""Grading a lab notebook: run its exercises and their checks, and report each exercise's pass or fail.

A lab's cells are tagged: "setup" (imports, parameters), "exercise" (a blank the student fills, its solution
in the cell's metadata: minilth.solution), "check" (calls to minilth.course.check), "run" (the lab's real
experiment, minutes of fine-tuning). Grading runs the setup, exercise and check cells only, unless `whole`,
so it takes seconds; every exercise a check cell names is reported, one that never ran as failed.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

from ..errors import MinilthError
from .check import REPORT_ENV

GRADED_TAGS = {"setup", "exercise", "check", "parameters"}


def tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def grade(path: str | Path, solutions: bool = False, whole: bool = False, timeout: int = 600) -> dict:
    """Returns the report of a lab notebook: {"notebook", "exercises": [{"exercise", "passed", "message"}], "passed",
    "total", "seconds"}. `solutions` runs each exercise's hidden solution instead of the student's cell."""
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError:
        raise MinilthError("grading runs notebooks with nbclient: pip install 'minilth[notebooks]'") from None
    path = Path(path)
    try:
        notebook = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as error:
        raise MinilthError(f"cannot read the notebook {path} ({type(error).__name__}); give a lab's .ipynb") from None
    exercises = [name for cell in notebook.cells if "check" in tags(cell)
                 for name in re.findall(r"check\.(\w+)\(", cell.source)]
    if not exercises:
        raise MinilthError(f"{path} has no check cell (tagged 'check', calling minilth.course.check): is it a lab?")
    if solutions:
        for cell in notebook.cells:
            if "exercise" in tags(cell):
                cell.source = cell.metadata["minilth"]["solution"]
    if not whole:
        notebook.cells = [cell for cell in notebook.cells if tags(cell) & GRADED_TAGS]
    with tempfile.TemporaryDirectory() as folder:
        report_file = Path(folder) / "results.jsonl"
        report_file.touch()
        started, previous = time.perf_counter(), os.environ.get(REPORT_ENV)
        os.environ[REPORT_ENV] = str(report_file)  # the kernel inherits it: every check appends its result there
        try:
            NotebookClient(notebook, timeout=timeout, kernel_name="python3", allow_errors=True,
                           resources={"metadata": {"path": str(path.parent.resolve())}}).execute()
        finally:
            if previous is None:
                del os.environ[REPORT_ENV]
            else:
                os.environ[REPORT_ENV] = previous
        results = {}
        for line in report_file.read_text(encoding="utf-8").splitlines():
            result = json.loads(line)
            results[result["exercise"]] = result  # the last check of an exercise counts
    rows = [results.get(name, {"exercise": name, "passed": False,
                               "message": "not run: an error in an earlier cell stopped it; run the notebook to see"})
            for name in dict.fromkeys(exercises)]
    return {"notebook": str(path), "exercises": rows, "passed": sum(row["passed"] for row in rows),
            "total": len(rows), "seconds": round(time.perf_counter() - started, 1)}
