"""The lessons' time budget: every tutorial notebook, top to bottom with its default parameters, timed.

    MINILTH_DATA_DIR=/path/to/glue python benchmarks/time_notebooks.py            # all of them
    MINILTH_DATA_DIR=/path/to/glue python benchmarks/time_notebooks.py 04 05      # some
    MINILTH_DATA_DIR=/path/to/glue python benchmarks/time_notebooks.py --labs     # the course's labs, solved

With --labs, each lab of course/ runs as the teacher's solved copy (python -m minilth.grade --write-labs DIR
--solved), and the time of each step (its cells tagged setup, check or run, in order) is printed for the teacher's
guide.

Each notebook runs in a fresh kernel in its own folder, as in a student's Jupyter (what it writes goes
to temporary folders), with the data already in $MINILTH_DATA_DIR, so the time is the lesson's and not
a download's. Besides the time it prints the lines of the notebook's output that carry its result
(metrics, verdicts, tables), so the effect a lesson shows is checked in the same run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import load_average, machine_line  # noqa: E402  benchmarks/timing.py

REPOSITORY = Path(__file__).resolve().parents[1]
TUTORIALS = REPOSITORY / "tutorials"


def execute(path: Path, solved: bool = False):
    """Returns (the notebook executed top to bottom in its own folder, seconds); `solved`: a course lab as the
    teacher's solved copy, each exercise cell holding its solution (python -m minilth.grade --write-labs DIR --solved).
    The kernel starts where a student's Jupyter starts it, in the notebook's folder, so that its paths relative to
    it resolve (lesson 8 reads ../runs/classroom and ../results/); what a lesson writes goes to temporary folders."""
    if solved:
        from minilth.course.grading import copy_of
        notebook = nbformat.reads(json.dumps(copy_of(path, solved=True)), as_version=4)
    else:
        notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=1800,
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    client.execute()
    return notebook, time.perf_counter() - started


def run_notebook(path: Path, solved: bool = False) -> tuple[float, str, list[tuple[str, float]]]:
    """Returns (seconds, its printed output, (tag, seconds) of each code cell) of one notebook executed top to
    bottom in its own folder; `solved`: its exercise cells replaced by their solutions (a course lab)."""
    notebook, seconds = execute(path, solved)
    printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.outputs if output.get("output_type") == "stream"
                      and output.get("name") == "stdout")
    return seconds, printed, [(",".join(cell.metadata.get("tags", [])) or "-", cell_seconds(cell))
                              for cell in notebook.cells if cell.cell_type == "code"]


def cell_seconds(cell) -> float:
    """Returns how long a cell ran, from the timestamps nbclient records in its metadata."""
    from datetime import datetime
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.status.busy"), timing.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))
            ).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="notebook number prefixes, e.g. 02 05 (default: all)")
    parser.add_argument("--labs", action="store_true", help="the course's labs (course/lab*.ipynb), solved")
    args = parser.parse_args()
    pattern = (REPOSITORY / "course").glob("lab*.ipynb") if args.labs else TUTORIALS.glob("[0-9][0-9]_*.ipynb")
    notebooks = [p for p in sorted(pattern) if not args.prefixes or p.stem.removeprefix("lab")[:2] in args.prefixes]
    print(machine_line(), flush=True)
    times = {}
    for path in notebooks:
        seconds, printed, cells = run_notebook(path, solved=args.labs)
        times[path.name] = seconds
        print(f"\n=== {path.name}: {seconds:.0f} s ({load_average()})\n{printed}", flush=True)
        if args.labs:
            print("cells (tags, seconds): " + "; ".join(f"{tags} {s:.0f}" for tags, s in cells), flush=True)
    print("\n| notebook | wall time |\n|---|---:|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds / 60:.1f} min ({seconds:.0f} s) |")
    print(f"| all {len(times)} | {sum(times.values()) / 60:.1f} min |")


if __name__ == "__main__":
    main()
