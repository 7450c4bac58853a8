"""python -m minilth.grade LAB.ipynb [...] --report report.json: grade the course's labs, for a teacher's autograder.

Runs each notebook's exercises and their checks (seconds: no fine-tuning, unless --whole) and writes a JSON
report of every exercise's pass or fail and its one-line message. Exit status 0 when every exercise passes,
1 when one fails, 2 for bad input.
"""
from __future__ import annotations

import json
import sys

from .course.lab_runner import grade
from .errors import run_cli
from .files import write_text
from .settings import CommandParser


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m minilth.grade",
                           description="Grade lab notebooks of the course: each exercise's pass or fail, in JSON.")
    parser.add_argument("notebooks", nargs="+", help="the students' lab notebooks (.ipynb)")
    parser.add_argument("--report", default=None, help="write the JSON report here (default: print it)")
    parser.add_argument("--solutions", action="store_true", help="run the hidden solutions (checks the lab itself)")
    parser.add_argument("--whole", action="store_true", help="run every cell, the lab's fine-tunings too")
    parser.add_argument("--timeout", type=int, default=600, help="seconds a cell may run (default: 600)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: run(args))


def run(args) -> int:
    reports = [grade(path, args.solutions, args.whole, args.timeout) for path in args.notebooks]
    for report in reports:
        for row in report["exercises"]:
            print(f"{'PASS' if row['passed'] else 'FAIL'} {report['notebook']} {row['exercise']}: {row['message']}")
    text = json.dumps(reports if len(reports) > 1 else reports[0], indent=2) + "\n"
    if args.report:
        write_text(args.report, text)
    else:
        print(text, end="")
    return 0 if all(report["passed"] == report["total"] for report in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
