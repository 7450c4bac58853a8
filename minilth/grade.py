"""python -m minilth.grade LAB.ipynb [...] --report report.json: grade the course's labs, for a teacher's autograder.

Each exercise of each notebook runs in a process of its own, apart from the grading (minilth/course/isolation.py
says what that guarantees), in seconds: the labs' fine-tunings are not run. Writes a JSON report of every exercise's
pass or fail and its one-line message. Exit status 0 when every exercise passes, 1 when one fails, 2 for bad input.

    python -m minilth.grade --write-labs students/            # the labs as students get them: no solutions
    python -m minilth.grade --write-labs solved/ --solved     # the teacher's solved copies
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .course.grading import grade_notebook, lab_of, write_copies
from .course.isolation import Limits, Sandbox
from .errors import MinilthError, run_cli
from .files import check_writable_folder, write_text
from .settings import CommandParser, add_arguments, from_arguments


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m minilth.grade",
                           description="Grade lab notebooks of the course: each exercise's pass or fail, in JSON.")
    parser.add_argument("notebooks", nargs="*", help="the students' lab notebooks (.ipynb), each named labNN_...")
    parser.add_argument("--report", default=None, help="write the JSON report here (default: print it)")
    parser.add_argument("--lab", default=None, help="grade every notebook as this lab (e.g. lab03), whatever its name")
    add_arguments(parser, Limits)
    copies = parser.add_argument_group("copies of the labs")
    copies.add_argument("--write-labs", metavar="FOLDER", default=None,
                        help="write the course's labs into FOLDER as students get them (no solutions), and grade "
                             "nothing")
    copies.add_argument("--solved", action="store_true", help="with --write-labs: the teacher's solved copies")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args), interrupted_hint="nothing was written; run the same command again")


def run(args) -> int:
    if args.write_labs:
        if args.notebooks:
            raise MinilthError("--write-labs writes the labs and grades nothing: give either notebooks or --write-labs")
        for path in write_copies(check_writable_folder(args.write_labs, "--write-labs"), args.solved):
            print(path)
        return 0
    if args.solved:
        raise MinilthError("--solved goes with --write-labs FOLDER (the teacher's solved copies)")
    if not args.notebooks:
        raise MinilthError("give the notebooks to grade (or --write-labs FOLDER)")
    limits = from_arguments(Limits, args)
    labs = [lab_of(path, args.lab) for path in args.notebooks]  # every input checked before any work
    for path in map(Path, args.notebooks):
        if not path.is_file():
            raise MinilthError(f"{path} is not a file: give the students' .ipynb notebooks")
    if args.report:
        check_report(Path(args.report))
    reports = []
    with Sandbox(limits) as sandbox:
        for path, lab in zip(args.notebooks, labs):
            reports.append(grade_notebook(path, lab, sandbox))
            for row in reports[-1]["exercises"]:  # as each notebook is graded: the progress of a class's grading
                print(f"{'PASS' if row['passed'] else 'FAIL'} {path} {row['exercise']}: {row['message']}", flush=True)
    text = json.dumps(reports if len(reports) > 1 else reports[0], indent=2) + "\n"
    if args.report:
        write_text(args.report, text)
    else:
        print(text, end="")
    return 0 if all(report["passed"] == report["total"] for report in reports) else 1


def check_report(path: Path) -> None:
    """Raises a one-line MinilthError unless the report can be written at `path` (before any grading)."""
    if path.is_dir():
        raise MinilthError(f"--report {path} is a folder: give a file name, e.g. {path / 'report.json'}")
    above = next(folder for folder in path.parents if folder.exists())
    if not above.is_dir():
        raise MinilthError(f"--report {path} is under {above}, which is a file: give a path in a folder")
    check_writable_folder(path.parent, "--report")


if __name__ == "__main__":
    sys.exit(main())
