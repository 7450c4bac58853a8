"""The course's labs and their grading: the labs as committed fail every exercise cleanly and hold no solution, the
teacher's solved copies pass, a student's cheats fail with the line that says why, the grader's own bad input is one
line, each lab runs whole, and a lab's first cell installs minilth into a fresh environment."""
import ast
import json
import os
import re
import shutil
import subprocess
import sys
from inspect import getsource
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from minilth.course import solutions
from minilth.course.exercises import LABS
from minilth.course.grading import copy_of, write_copies
from minilth.grade import main as grade_main
from test_download import bound_by_permission_bits

REPOSITORY = Path(__file__).resolve().parents[1]
LAB_FILES = sorted((REPOSITORY / "course").glob("lab*.ipynb"))
QUICK_CHANGES = {"max_train_examples": 8, "max_eval_examples": 16, "epochs": 1, "batch_size": 8}
QUICK = {"lab02": "CLASSIFICATION = {'task': 'sst2', 'max_train_examples': 8, 'max_eval_examples': 16}",
         "lab04": "CHANGES = {**CHANGES, 'target_sparsity': 0.2, 'rate': 0.1}",
         "lab06": "CHANGES = {**CHANGES, 'max_train_examples': 40}\nMLM_BLOCKS = 4"}  # 40 pairs: 4 blocks of text


def tagged(notebook, tag: str) -> list:
    return [cell for cell in notebook.cells if tag in cell.metadata.get("tags", [])]


def test_there_is_a_lab_for_lessons_02_to_07():
    assert [lab.name[:5] for lab in LAB_FILES] == list(LABS) == ["lab02", "lab03", "lab04", "lab05", "lab06", "lab07"]


@pytest.mark.parametrize("lab", LAB_FILES, ids=lambda path: path.stem)
def test_a_lab_says_what_it_teaches_and_is_committed_clean(lab):
    notebook = nbformat.read(lab, as_version=4)
    text = notebook.cells[0].source
    assert "**Learning goal.**" in text and "**Read first.**" in text and "minilth/" in text
    assert "## Questions to discuss" in notebook.cells[-1].source
    assert len(tagged(notebook, "parameters")) == 1 and len(tagged(notebook, "parameters")[0].source.splitlines()) <= 8
    assert "install" in notebook.cells[1].metadata["tags"]  # the first code cell installs minilth
    exercises = [exercise.name for exercise in LABS[lab.name[:5]]]
    assert [re.match(r"def (\w+)", cell.source)[1] for cell in tagged(notebook, "exercise")] == exercises
    assert all("raise NotImplementedError" in cell.source for cell in tagged(notebook, "exercise"))
    assert [cell.source for cell in tagged(notebook, "check")] == [f"check.{name}({name})" for name in exercises]
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert all(set(cell.metadata) <= {"tags"} for cell in notebook.cells)  # nothing hidden in a cell's metadata


def solution_lines(name: str) -> list[str]:
    """The lines of a solution's code that could give it away: its body's, without the docstring and comments."""
    source = getsource(getattr(solutions, name))
    function = ast.parse(source).body[0]
    first = function.body[1 if ast.get_docstring(function) else 0].lineno
    lines = [line.split("#")[0].strip() for line in source.splitlines()[first - 1:]]
    return [line for line in lines if len(line) > 12]


def code_lines(path: Path) -> set[str]:
    """Every line of a notebook's cells, stripped of indentation and comments."""
    return {line.split("#")[0].strip() for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]
            for line in "".join(cell["source"]).splitlines()}


def test_no_committed_lab_and_no_students_copy_holds_a_solution(tmp_path):
    students = write_copies(tmp_path)
    assert [path.name for path in students] == [path.name for path in LAB_FILES]
    for path in [*LAB_FILES, *students]:
        assert "solution" not in path.read_text(encoding="utf-8").lower(), path
        for exercise in LABS[path.name[:5]]:
            lines = solution_lines(exercise.name)
            found = [line for line in lines if line in code_lines(path)]
            assert len(found) < len(lines) / 2, f"{path} holds the solution of {exercise.name}: {found}"
    for path in students:
        assert json.loads(path.read_text(encoding="utf-8")) == copy_of(REPOSITORY / "course" / path.name)


def test_the_search_for_solutions_finds_them_in_the_solved_copies(tmp_path):
    for path in write_copies(tmp_path, solved=True):
        assert all(set(solution_lines(exercise.name)) <= code_lines(path) for exercise in LABS[path.name[:5]]), path


def grade(argv: list[str], capsys) -> tuple[int, list[dict], str]:
    """Runs the grading command; returns its exit status, the report (a list, one entry per notebook) and stdout."""
    status = grade_main(argv)
    out = capsys.readouterr().out
    report = json.loads(Path(argv[argv.index("--report") + 1]).read_text())
    return status, report if isinstance(report, list) else [report], out


def test_the_labs_fail_every_exercise_cleanly_and_the_solved_copies_pass(tmp_path, capsys):
    solved = write_copies(tmp_path / "solved", solved=True)
    status, report, out = grade([*map(str, LAB_FILES), *map(str, solved), "--report", str(tmp_path / "r.json")],
                                capsys)
    assert status == 1 and len(report) == 2 * len(LAB_FILES)
    blank, done = report[:len(LAB_FILES)], report[len(LAB_FILES):]
    assert all(row["message"].startswith("not written yet") for lab in blank for row in lab["exercises"]), blank
    assert all(lab["passed"] == lab["total"] == len(LABS[lab["lab"]]) for lab in done), done
    assert "Traceback" not in out and "Kernel" not in out
    assert out.count("\nPASS ") + out.startswith("PASS ") == sum(len(exercises) for exercises in LABS.values())


# --- a student who would rather pass than learn ---------------------------------------------------------------------


LOOP_FOREVER = "def masked_step(model, batch, optimizer, mask):\n    while True:\n        pass"
ALLOCATE = ("import torch\ndef masked_step(model, batch, optimizer, mask):\n    kept = []\n    while True:\n"
            "        kept.append(torch.ones(2**24))")
PATCH_THE_CHECKS = ("import minilth.course.exercise, minilth.course.check, minilth.course.isolation\n"
                    "minilth.course.exercise.verdict = lambda *args: None\n"
                    "minilth.course.check.run = lambda *args, **kwargs: None\n"
                    "def masked_step(model, batch, optimizer, mask):\n    pass")
FORGE_THE_OUTCOMES = ("import minilth.course.isolation as isolation\n"
                      "isolation.run_calls = lambda exercise, function, calls: [{'returned': {'state': {}}}]\n"
                      "def masked_step(model, batch, optimizer, mask):\n    pass")  # what isolation sends, forged
PATCH_TORCH = ("import torch\ntorch.equal = lambda *args: True\ntorch.allclose = lambda *args, **kwargs: True\n"
               "def masked_step(model, batch, optimizer, mask):\n    pass")
PRINT_PASS = ("print('PASS masked_step: matches minilth\\'s')\n"
              "def masked_step(model, batch, optimizer, mask):\n    print('PASS masked_step: matches minilth\\'s')")
RESTORE_MINILTHS = ("import minilth.prune\nminilth.prune.magnitude_prune.__code__ = (lambda w, m, s: m).__code__\n"
                    "from minilth.prune import magnitude_prune")
SPAWN_A_PROCESS = ("import subprocess, sys\ndef magnitude_prune(weights, mask, target_sparsity):\n"
                   "    subprocess.run([sys.executable, '-c', 'import minilth'])")
READ_THE_SOLUTIONS = ("import minilth.course\ndef magnitude_prune(weights, mask, target_sparsity):\n"
                      "    namespace = {}\n"
                      "    exec(open(minilth.course.__path__[0] + '/solutions.py').read(), namespace)\n"
                      "    return namespace['magnitude_prune'](weights, mask, target_sparsity)")
READ_THROUGH_A_FOLDER = ("import os, site\ndef magnitude_prune(weights, mask, target_sparsity):\n"
                         "    folder = os.open(site.getsitepackages()[0], os.O_RDONLY)  # to open paths relative to it\n"
                         "    return os.read(os.open('../' * 20 + 'etc/hostname', os.O_RDONLY, dir_fd=folder), 99)")
KILL_THE_GRADER = "import os\ndef magnitude_prune(weights, mask, target_sparsity):\n    os.kill(os.getppid(), 9)"


def learnt_by_heart() -> str:
    """learning_rate answering the calls of one grading (seed 1) in order, from a table."""
    from minilth.course.exercises.lab02 import LEARNING_RATE
    table = [solutions.learning_rate(*call) for call in LEARNING_RATE.calls(1)]
    return f"ANSWERS = iter({table!r})\ndef learning_rate(step, peak, warmup_steps, total_steps):\n" \
           f"    return next(ANSWERS)"


# (lab, exercise, what the student did: the exercise cell's new source, or None to delete its check cell; the line)
CHEATS = [
    ("lab03", "magnitude_prune", "from minilth.prune import magnitude_prune",
     "answered with minilth's own magnitude_prune"),
    ("lab03", "magnitude_prune", "import minilth.prune as p\ndef magnitude_prune(weights, mask, s):\n"
                                 "    return p.magnitude_prune(weights, mask, s)", "answered with minilth's own"),
    ("lab03", "magnitude_prune", "import minilth.lottery.baselines as b\ndef magnitude_prune(weights, mask, s):\n"
                                 "    return b.magnitude_prune(weights, mask, s)",
     "answered with minilth's own magnitude_prune"),
    ("lab03", "magnitude_prune", RESTORE_MINILTHS, "may not object.__setattr__"),
    ("lab03", "magnitude_prune", "from minilth.course.solutions import magnitude_prune",
     "may only read Python's own files"),
    ("lab03", "magnitude_prune", READ_THE_SOLUTIONS, "may only read Python's own files"),
    ("lab03", "magnitude_prune", READ_THROUGH_A_FOLDER, "may only read Python's own files"),
    ("lab03", "magnitude_prune", SPAWN_A_PROCESS, "may not subprocess.Popen"),
    ("lab03", "magnitude_prune", KILL_THE_GRADER, "may not os.kill"),
    ("lab03", "rewind", "def rewind(model, theta_0, mask):\n    return None", "pruned weights were rewound"),
    ("lab03", "rewind", None, "its check cell is gone"),
    ("lab03", "rewind", "def rewind_weights(model, theta_0, mask):\n    pass", "no cell defines rewind"),
    ("lab04", "masked_step", PATCH_THE_CHECKS, "the weights did not change"),
    ("lab04", "masked_step", FORGE_THE_OUTCOMES, "returned something the check cannot compare"),
    ("lab04", "masked_step", PATCH_TORCH, "the weights did not change"),
    ("lab04", "masked_step", PRINT_PASS, "the weights did not change"),
    ("lab04", "masked_step", "import os\ndef masked_step(model, batch, optimizer, mask):\n    os._exit(3)",
     "its process ended before answering (exit status 3)"),
    ("lab04", "masked_step", "import sys\nsys.exit(0)\ndef masked_step(model, batch, optimizer, mask):\n    pass",
     "its process failed (SystemExit: 0)"),
    ("lab04", "masked_step", LOOP_FOREVER, "stopped after the time limit of 15 s (--time-limit)"),
    ("lab04", "masked_step", ALLOCATE, "stopped at the memory limit of 1 GB (--memory-limit)"),
    ("lab05", "is_ticket", "def is_ticket(dense, subnetwork, sampling_error):\n    return None",
     "return two booleans"),
    ("lab02", "learning_rate", learnt_by_heart(), "rises linearly from 0 to the peak"),
]


def cheating_copy(lab: str, exercise: str, source: str | None) -> dict:
    """The lab's solved copy with one cheat: the exercise cell's source replaced, or (None) its check cell deleted."""
    notebook = copy_of(next(path for path in LAB_FILES if path.name.startswith(lab)), solved=True)
    for cell in list(notebook["cells"]):
        if source is None and "".join(cell["source"]) == f"check.{exercise}({exercise})":
            notebook["cells"].remove(cell)
        elif source is not None and "".join(cell["source"]).startswith(f"def {exercise}("):
            cell["source"] = source
    return notebook


@pytest.fixture(scope="module")
def cheats_graded(tmp_path_factory):
    """The report of one grading of every cheat, each in a notebook of its own (and exit status, stdout, stderr)."""
    folder = tmp_path_factory.mktemp("cheats")
    paths = []
    for index, (lab, exercise, source, _) in enumerate(CHEATS):
        paths.append(folder / f"{lab}_cheat_{index}.ipynb")
        paths[-1].write_text(json.dumps(cheating_copy(lab, exercise, source)))
    result = subprocess.run([sys.executable, "-m", "minilth.grade", *map(str, paths), "--report",
                             str(folder / "report.json"), "--time-limit", "15", "--memory-limit", "1"],
                            capture_output=True, text=True)
    return json.loads((folder / "report.json").read_text()), result


@pytest.mark.parametrize("index", range(len(CHEATS)), ids=lambda i: f"{CHEATS[i][1]}-{i}")
def test_a_cheat_fails_with_the_line_that_says_why(index, cheats_graded):
    report, _ = cheats_graded
    lab, exercise, _, message = CHEATS[index]
    row = next(row for row in report[index]["exercises"] if row["exercise"] == exercise)
    assert not row["passed"] and message in row["message"], row
    others = [row for row in report[index]["exercises"] if row["exercise"] != exercise]
    assert all(row["passed"] for row in others), others  # the rest of the notebook is still graded


def test_a_grading_with_cheats_reports_every_notebook_and_prints_no_traceback(cheats_graded):
    report, result = cheats_graded
    assert result.returncode == 1 and len(report) == len(CHEATS) >= 10
    assert "Traceback" not in result.stdout + result.stderr and "Kernel is running over TCP" not in result.stderr


# --- the grader's own bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, message", [
    (["--time-limit", "0"], "--time-limit must be a positive number, got 0.0"),
    (["--time-limit", "-1"], "--time-limit must be a positive number, got -1.0"),
    (["--time-limit", "nan"], "--time-limit must be a positive number"),
    (["--memory-limit", "inf"], "--memory-limit must be a positive number"),
    (["--lab", "lab99"], "--lab lab99 names no lab of the course"),
    (["--report", "{folder}"], "is a folder: give a file name"),
    (["--report", "{file}/report.json"], "which is a file: give a path in a folder"),
    (["--report", "{file}/sub/report.json"], "which is a file: give a path in a folder"),
    (["--solved"], "--solved goes with --write-labs"),
    (["--write-labs", "{folder}"], "--write-labs writes the labs and grades nothing"),
])
def test_bad_input_is_one_line_before_any_work(argv, message, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    argv = [arg.format(folder=tmp_path, file=tmp_path / "file") for arg in argv]
    assert grade_main([str(LAB_FILES[1]), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_a_file_not_named_for_a_lab_or_not_there_is_one_line(tmp_path, capsys):
    for path, message in [(tmp_path / "homework.ipynb", "names no lab of the course"),
                          (tmp_path / "lab03_missing.ipynb", "is not a file")]:
        assert grade_main([str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize("content", ["[]", "{", "{\"cells\": [1]}", "\x89PNG"])
def test_a_file_that_is_not_a_notebook_fails_each_exercise_saying_so(content, tmp_path, capsys):
    (tmp_path / "lab03_broken.ipynb").write_text(content, encoding="latin-1")
    status, report, out = grade([str(tmp_path / "lab03_broken.ipynb"), "--report", str(tmp_path / "r.json")], capsys)
    assert status == 1 and report[0]["total"] == 2 and report[0]["passed"] == 0
    assert all("is not a Jupyter notebook" in row["message"] for row in report[0]["exercises"])
    assert "Traceback" not in out


def test_a_read_only_report_folder_is_one_line_before_any_work(tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        result = subprocess.run([sys.executable, "-m", "minilth.grade", str(LAB_FILES[1]), "--report",
                                 str(folder / "report.json")], preexec_fn=bound_by_permission_bits,
                                capture_output=True, text=True)
    finally:
        folder.chmod(0o700)
    assert result.returncode == 2 and result.stdout == ""  # nothing graded
    assert result.stderr.strip().splitlines() == [f"error: --report {folder} cannot be written ({folder}: Permission "
                                                  f"denied); give another folder"]


# --- the labs run whole ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lab", LAB_FILES, ids=lambda path: path.stem)
def test_a_lab_runs_whole_with_its_solutions(lab, glue_dir, tmp_path, monkeypatch):
    notebook = nbformat.reads(json.dumps(copy_of(lab, solved=True)), as_version=4)
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    quick = f"CHANGES = {{**CHANGES, **{QUICK_CHANGES!r}}}\n{QUICK.get(lab.name[:5], '')}"
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(quick))
    monkeypatch.setenv("MINILTH_DATA_DIR", str(glue_dir))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    NotebookClient(notebook, kernel_name="python3", timeout=600,
                   resources={"metadata": {"path": str(lab.parent)}}).execute()  # raises, naming the cell, on error
    printed = "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))
    assert "FAIL" not in printed and printed.count("PASS") >= 2


def test_a_labs_first_cell_installs_minilth_into_a_fresh_environment(tmp_path):
    """A fresh virtual environment without minilth: the install cell's code, run from course/, installs the clone.

    minilth's dependencies (torch, matplotlib, ...) are those of this environment, seen through a path file, so
    that pip has only minilth itself to build and install (a path file adds a folder to sys.path without running
    the folder's own path files, so this environment's editable install of minilth, README's, stays invisible). pip builds minilth
    from a package index's setuptools; without an index (offline) nothing can be built, so the test says so and
    stops (CI has one)."""
    index = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "setuptools", "--retries", "0",
                            "--timeout", "10"], capture_output=True, text=True)
    if index.returncode != 0:
        reason = (index.stderr.strip().splitlines() or ["pip index failed"])[-1]
        pytest.skip(f"no package index reachable to install into a fresh environment ({reason})")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    environment = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    environment.pop("PYTHONPATH", None)
    venv_site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    (Path(venv_site) / "dependencies.pth").write_text(str(Path(torch.__file__).parents[1]) + "\n")
    absent = subprocess.run([str(python), "-c", "import minilth"], capture_output=True, env=environment, cwd=tmp_path)
    assert absent.returncode != 0  # a fresh environment: minilth is not there
    # a copy of the clone: building minilth writes build/ and *.egg-info/ beside its sources
    clone = tmp_path / "minilth"

    def not_copied(folder: str, names: list[str]) -> list[str]:  # the clone's own data/, not minilth/data/
        at_top = {".git", "runs", "data", "build", ".pytest_cache"} if Path(folder) == REPOSITORY else set()
        return [name for name in names if name in at_top or name == "__pycache__" or name.endswith(".egg-info")]

    shutil.copytree(REPOSITORY, clone, ignore=not_copied)
    assert (clone / "minilth" / "data" / "tasks.py").is_file()
    install = nbformat.read(LAB_FILES[0], as_version=4).cells[1].source
    subprocess.run([str(python), "-c", install], check=True, cwd=clone / "course", env=environment)
    checked = subprocess.run([str(python), "-c", "from minilth.course import check, solutions\n"
                              "assert check.rewind(solutions.rewind).passed"],
                             capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert checked.returncode == 0 and "PASS rewind" in checked.stdout, checked.stderr
