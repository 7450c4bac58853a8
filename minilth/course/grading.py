"""Grading lab notebooks, and writing the labs' copies for students (no solutions) and for the teacher (solved).

    with Sandbox(Limits()) as sandbox:
        report = grade_notebook("lab03_alice.ipynb", "lab03", sandbox)  # {"exercises": [...], "passed": 2, ...}
    write_copies("students/")                # course/lab*.ipynb, outputs cleared, no solution anywhere
    write_copies("solved/", solved=True)     # each exercise cell holding the teacher's solution

A lab is named by its file's `labNN` prefix (or --lab). Its exercises are the grader's list (exercises.LABS); for
each, the grader sends the notebook's cells tagged "setup" and the cell that defines the exercise's function to an
exercise's process (isolation.py), nothing else: write everything an exercise needs in its own cell.
"""
from __future__ import annotations

import ast
import inspect
import json
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import MinilthError
from ..files import write_text
from .exercise import Exercise, verdict
from .exercises import LABS
from .isolation import Sandbox

COURSE = Path(__file__).resolve().parents[2] / "course"  # the labs, in a clone of the repository
PASSED = "matches minilth's"


@dataclass
class Cell:
    index: int  # the cell's place in the notebook, from 0
    tags: set[str]
    source: str


class NotANotebook(ValueError):
    """A student's file that is not a notebook: every exercise of it fails, saying so."""


def lab_of(path: str | Path, lab: str | None = None) -> str:
    """Returns the lab a notebook is: `lab`, else its file name's labNN prefix; a MinilthError naming the labs if
    neither names one."""
    prefix = re.match(r"lab\d\d", Path(path).name)
    name = lab or (prefix[0] if prefix else None)
    if name not in LABS:
        given = f"--lab {lab}" if lab else f"the file name {Path(path).name}"
        raise MinilthError(f"{given} names no lab of the course ({', '.join(LABS)}): name the file labNN_... or "
                           f"pass --lab")
    return name


def code_cells(path: str | Path) -> list[Cell]:
    """Returns a notebook's code cells; raises NotANotebook (one line) for a file that is not a notebook."""
    try:
        notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotANotebook(f"is not a Jupyter notebook ({type(error).__name__})") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise NotANotebook("is not a Jupyter notebook (a JSON object with a list of cells)")
    cells = []
    for index, cell in enumerate(notebook["cells"]):
        if not isinstance(cell, dict):
            raise NotANotebook(f"is not a Jupyter notebook: its cell {index + 1} is not a JSON object")
        source, tags = cell.get("source", ""), (cell.get("metadata") or {}).get("tags", [])
        source = "".join(source) if isinstance(source, list) else source
        if not isinstance(source, str) or not isinstance(tags, list):
            raise NotANotebook(f"is not a Jupyter notebook: its cell {index + 1} holds no text")
        if cell.get("cell_type") == "code":
            cells.append(Cell(index, {str(tag) for tag in tags}, source))
    return cells


def without_magics(source: str) -> str:
    """Returns a cell's source with IPython's %magic and !shell lines made `pass` (they mean nothing in a check)."""
    return re.sub(r"^(\s*)[%!].*$", r"\1pass", source, flags=re.M)


def defines(source: str, name: str) -> bool:
    """Whether a cell binds `name` at its top level (def, assignment, import); a cell that does not parse counts
    when it holds `def name`, so that its error is reported."""
    try:
        tree = ast.parse(without_magics(source))
    except SyntaxError:
        return re.search(rf"\bdef\s+{name}\b", source) is not None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(target, ast.Name) and target.id == name for target in targets):
                return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names):
                return True
    return False


def grade_notebook(path: str | Path, lab: str, sandbox: Sandbox) -> dict:
    """Returns the report of one notebook: {"notebook", "lab", "exercises": [{"exercise", "passed", "message",
    "seed"}], "passed", "total", "seconds"}; every exercise of the lab is in it, passed or not."""
    started = time.perf_counter()
    try:
        cells, unreadable = code_cells(path), None
    except NotANotebook as error:
        cells, unreadable = [], f"{Path(path).name} {error}"
    rows = []
    for exercise in LABS[lab]:
        seed = random.SystemRandom().randrange(1, 2**31)  # fresh inputs at every grading
        message = unreadable or grade_exercise(exercise, cells, sandbox, seed)
        rows.append({"exercise": exercise.name, "passed": message is None, "message": message or PASSED, "seed": seed})
    return {"notebook": str(path), "lab": lab, "exercises": rows, "passed": sum(row["passed"] for row in rows),
            "total": len(rows), "seconds": round(time.perf_counter() - started, 1)}


def grade_exercise(exercise: Exercise, cells: list[Cell], sandbox: Sandbox, seed: int) -> str | None:
    """Returns None when the notebook's function for the exercise passes its check, else the line that says why."""
    name = exercise.name
    own = [cell for cell in cells if defines(cell.source, name)]
    if not own:
        return f"no cell defines {name}: write it in its exercise cell, under that name"
    if not any(re.search(rf"\bcheck\.{name}\(", cell.source) for cell in cells):
        return f"its check cell is gone: put `check.{name}({name})` back below the exercise"
    sent = [cell for cell in cells if cell in own or "setup" in cell.tags]
    answer = sandbox.run(name, [(cell.index, without_magics(cell.source)) for cell in sent], seed)
    if isinstance(answer, str):
        return answer
    if "cell" in answer:  # [index, the error]: a cell raised before any call
        index, raised = answer["cell"]
        where = f"the cell of {name}" if any(cell.index == index for cell in own) else f"setup cell {index + 1}"
        return f"{where} raised {raised}"
    if "undefined" in answer:
        return f"{name} is not a function after its cell ran (it is a {answer['undefined']})"
    return verdict(exercise, seed, answer.get("outcomes"))


# --- the labs' copies -----------------------------------------------------------------------------------------


def labs() -> list[Path]:
    """Returns the labs of course/ (in a clone of the repository), in order."""
    found = sorted(COURSE.glob("lab[0-9][0-9]_*.ipynb"))
    if not found:
        raise MinilthError(f"no labs in {COURSE}: the labs are in the repository's course/ folder; run this from a "
                           f"clone")
    return found


def copy_of(path: Path, solved: bool = False) -> dict:
    """Returns a lab notebook as a student gets it (outputs cleared, nothing but tags in a cell's metadata) or, with
    `solved`, as the teacher's solved copy (each exercise cell holding the solution)."""
    from . import solutions  # the teacher's: only the grader's own process imports it
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        tags = (cell.get("metadata") or {}).get("tags", [])
        cell["metadata"] = {"tags": tags} if tags else {}
        if cell["cell_type"] != "code":
            continue
        cell["outputs"], cell["execution_count"] = [], None
        if solved and "exercise" in tags:
            name = next(e.name for e in LABS[lab_of(path)] if defines("".join(cell["source"]), e.name))
            cell["source"] = inspect.getsource(getattr(solutions, name)).rstrip("\n").splitlines(keepends=True)
    return notebook


def write_copies(folder: str | Path, solved: bool = False) -> list[Path]:
    """Writes every lab's copy (for students, or `solved` for the teacher) into `folder`; returns their paths."""
    written = []
    for path in labs():
        written.append(Path(folder) / path.name)
        write_text(written[-1], json.dumps(copy_of(path, solved), indent=1, ensure_ascii=False) + "\n")
    return written
