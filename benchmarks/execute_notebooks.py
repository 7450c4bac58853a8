"""The executed copies: every tutorial and every lab (with its solutions), run top to bottom with its default
parameters, saved with its outputs where a student browsing the repository sees them rendered.

    MINILTH_DATA_DIR=/path/to/glue python benchmarks/execute_notebooks.py            # all of them
    MINILTH_DATA_DIR=/path/to/glue python benchmarks/execute_notebooks.py 01 lab03   # some

tutorials/NN_name.ipynb -> tutorials/executed/NN_name.ipynb, course/labNN_name.ipynb -> course/solved/labNN_name.ipynb.
The source notebooks stay without outputs. Each copy opens with a stamp (the date, the CPU, torch, the
commit, its wall time and the load), its links point back to the sources' folder, and it keeps what a
reader needs: printed text (progress bars at their last frame), tables and figures as PNG at screen
resolution; the progress-bar widgets, which a browser shows only at their first frame, are left out.
Each notebook runs in a fresh kernel in its own folder, as in a student's Jupyter (benchmarks/time_notebooks.py's
`execute`), so lesson 8 reads the classroom run in runs/classroom when one is there.
"""
from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from time_notebooks import execute  # noqa: E402  benchmarks/time_notebooks.py
from timing import cpu_model, load_average  # noqa: E402  benchmarks/timing.py

from minilth import files  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
WIDGET = "application/vnd.jupyter.widget-view+json"
RELATIVE_LINK = re.compile(r"\]\((?![a-z]+:|#|/)([^)\s]+)\)")  # ](path) that is neither a URL, an anchor nor absolute


def sources() -> list[tuple[Path, Path, bool]]:
    """Returns (source, executed copy, solved) of every tutorial and lab, in order."""
    lessons = [(path, path.parent / "executed" / path.name, False)
               for path in sorted((REPOSITORY / "tutorials").glob("[0-9][0-9]_*.ipynb"))]
    labs = [(path, path.parent / "solved" / path.name, True)
            for path in sorted((REPOSITORY / "course").glob("lab*.ipynb"))]
    return lessons + labs


def commit() -> str:
    """Returns the short commit of the repository, saying so when its code or notebooks have uncommitted changes."""
    git = ["git", "-C", str(REPOSITORY)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    copies = [f":(exclude){folder}" for folder in ("tutorials/executed", "course/solved")]  # this command's output
    changed = subprocess.run([*git, "status", "--porcelain", "--", "minilth", "tutorials", "course", *copies],
                             capture_output=True, text=True).stdout.strip()
    return (head or "unknown") + (" with uncommitted changes" if changed else "")


def stamp(source: Path, seconds: float, solved: bool, when: datetime.date) -> dict:
    """Returns where and how a copy was made: {"date", "cpu", "torch", "commit", "seconds", "load", "source"}."""
    import os

    import torch
    return {"date": when.isoformat(), "cpu": f"{cpu_model()}, {os.cpu_count()} cores", "torch": torch.__version__,
            "commit": commit(), "seconds": round(seconds), "load": load_average(), "solved": solved,
            "source": source.name}


def stamp_cell(record: dict):
    """Returns the markdown cell an executed copy opens with."""
    what = "with the exercises' solutions" if record["solved"] else "with its default parameters"
    return nbformat.v4.new_markdown_cell(
        f"> **Executed copy** of [`{record['source']}`](../{record['source']}), run top to bottom {what}: "
        f"{record['date']}, {record['cpu']}, torch {record['torch']}, commit `{record['commit']}`, "
        f"{record['seconds']} s ({record['load']}). Open the source to run it yourself; "
        f"`python benchmarks/execute_notebooks.py` regenerates every copy.")


def for_reading(notebook, record: dict):
    """Returns the executed notebook as a copy to read: stamped, links pointing back to the sources' folder, no
    widget outputs or widget state, progress text at its last frame, no per-cell timing metadata."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = RELATIVE_LINK.sub(r"](../\1)", cell.source)
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        cell.outputs = [output for output in cell.outputs if WIDGET not in output.get("data", {})]
        for output in cell.outputs:
            if output.output_type == "stream":
                output.text = last_frames(output.text)
    notebook.metadata.pop("widgets", None)
    notebook.metadata["minilth"] = {"executed": record}
    notebook.cells.insert(0, stamp_cell(record))
    return notebook


def last_frames(text: str) -> str:
    """Returns printed text as a terminal leaves it: of each line rewritten with carriage returns, the last version."""
    return "\n".join(([part for part in line.split("\r") if part] or [""])[-1] for line in text.split("\n"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prefixes", nargs="*", help="which: tutorial numbers (01 08) or labs (lab03); default: all")
    args = parser.parse_args()
    chosen = [(source, copy, solved) for source, copy, solved in sources()
              if not args.prefixes or any(source.name.startswith(prefix) for prefix in args.prefixes)]
    if not chosen:
        sys.exit(f"error: no tutorial or lab starts with {' or '.join(args.prefixes)}; see --help")
    for source, copy, solved in chosen:
        notebook, seconds = execute(source, solved)
        record = stamp(source, seconds, solved, datetime.date.today())
        files.write_text(copy, nbformat.writes(for_reading(notebook, record)))
        size = copy.stat().st_size / 1e6
        print(f"{copy.relative_to(REPOSITORY)}: {seconds:.0f} s, {size:.2f} MB ({record['load']})", flush=True)


if __name__ == "__main__":
    main()
