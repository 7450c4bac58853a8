"""The lessons' time budget: every tutorial notebook, top to bottom with its default parameters, timed.

    MINILTH_DATA_DIR=/path/to/glue python benchmarks/time_notebooks.py            # all of them
    MINILTH_DATA_DIR=/path/to/glue python benchmarks/time_notebooks.py 04 05      # some

Each notebook runs in a fresh kernel in a temporary folder (what it writes lands there), with the
data already in $MINILTH_DATA_DIR, so the time is the lesson's and not a download's. Besides the
time it prints the lines of the notebook's output that carry its result (metrics, verdicts,
tables), so the effect a lesson shows is checked in the same run.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import load_average, machine_line  # noqa: E402  benchmarks/timing.py

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"


def run_notebook(path: Path) -> tuple[float, str]:
    """Returns (seconds, its printed output) of one notebook executed top to bottom in a temporary folder."""
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="minilth_lesson_") as folder:
        client = NotebookClient(notebook, kernel_name="python3", timeout=1800,
                                resources={"metadata": {"path": folder}})
        started = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - started
    printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.outputs if output.get("output_type") == "stream"
                      and output.get("name") == "stdout")
    return seconds, printed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="notebook number prefixes, e.g. 02 05 (default: all)")
    args = parser.parse_args()
    notebooks = [p for p in sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
                 if not args.prefixes or p.name[:2] in args.prefixes]
    print(machine_line(), flush=True)
    times = {}
    for path in notebooks:
        seconds, printed = run_notebook(path)
        times[path.name] = seconds
        print(f"\n=== {path.name}: {seconds:.0f} s ({load_average()})\n{printed}", flush=True)
    print("\n| notebook | wall time |\n|---|---:|")
    for name, seconds in times.items():
        print(f"| {name} | {seconds / 60:.1f} min ({seconds:.0f} s) |")
    print(f"| all {len(times)} | {sum(times.values()) / 60:.1f} min |")


if __name__ == "__main__":
    main()
