"""The docs say what the code is: README.md, tutorials/, course/, results/ and benchmarks/README.md. Every
`minilth/...` path they name exists, every dotted `minilth.` name imports, every flag of a `python -m minilth.X`
command is a flag of X; README's "Read the code" table gives the core's true sizes and what ticket.py imports from
lottery/, its IMP loop is copied from ticket.py, its list of the options written by hand is complete; the notebooks'
parameter cells open as tutorials/README says; and the code blocks marked runnable run.

A block is marked runnable by an HTML comment on the line before it, `<!-- runnable: ... -->`, whose text says
what the test runs it on: RUNNABLE below gives, per doc, what is set up (small inputs in place of a download or a
long training).
"""
import argparse
import ast
import dataclasses
import importlib
import re
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "tutorials/README.md", "course/README.md", "results/README.md", "benchmarks/README.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
COMMAND = re.compile(r"-m (minilth(?:\.\w+)+)")


def read(doc: str) -> str:
    return (REPOSITORY / doc).read_text(encoding="utf-8")


def section(text: str, title: str) -> str:
    """Returns the text of a doc's `## title` section."""
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def paths_named(text: str) -> set[str]:
    """Every `minilth/...` path in a doc (not part of a longer path or a URL)."""
    return set(re.findall(r"(?<![\w/.-])minilth/[\w./-]*\w/?", text))


def dotted_names(text: str) -> set[str]:
    """Every `minilth.x.y` name in a doc (not the tail of a longer dotted name, such as metadata.minilth.solution)."""
    return set(re.findall(r"(?<![\w/.-])minilth(?:\.\w+)+", text))


def resolves(name: str) -> bool:
    """True when a dotted name is a module, or an attribute of the longest module it starts with."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def commands(text: str) -> list[tuple[str, str]]:
    """Returns (module, what follows it) for every `-m minilth.X` in a doc: to the end of the line and its
    continuation lines (ending with a backslash), the closing backtick of an inline command, a shell comment, or the
    next command on the line."""
    found = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        matches = list(COMMAND.finditer(line))
        for match, following in zip(matches, matches[1:] + [None]):
            rest = line[match.end():following.start() if following else None]
            found.append((match.group(1), re.split(r"`| #", rest)[0]))
    return found


def option_strings(parser: argparse.ArgumentParser, words: list[str]) -> set[str]:
    """The flags a parser takes; for a parser with sub-commands, those of the sub-command the words name."""
    flags = {option for action in parser._actions for option in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = next((word for word in words if word in action.choices), None)
            assert chosen, f"no sub-command of {parser.prog} among {words}"
            flags |= option_strings(action.choices[chosen], words)
    return flags


@pytest.mark.parametrize("doc", DOCS)
def test_every_minilth_path_a_doc_names_exists(doc):
    missing = sorted(path for path in paths_named(read(doc)) if not (REPOSITORY / path).exists())
    assert not missing, f"{doc} names paths that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_dotted_minilth_name_a_doc_names_imports(doc):
    unknown = sorted(name for name in dotted_names(read(doc)) if not resolves(name))
    assert not unknown, f"{doc} names what does not import: {unknown}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_flag_of_a_minilth_command_in_a_doc_is_a_flag_of_that_command(doc):
    for module, arguments in commands(read(doc)):
        command = importlib.import_module(module)
        assert hasattr(command, "main") and hasattr(command, "build_parser"), f"{doc}: {module} is not a command"
        words = arguments.split()
        flags = {word.split("=")[0] for word in words if re.fullmatch(r"--[a-z][\w-]*(=\S*)?", word)}
        unknown = flags - option_strings(command.build_parser(), words)
        assert not unknown, f"{doc}: `python -m {module}{arguments}`: {module} has no {sorted(unknown)}"


def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """A parser and its sub-commands' parsers."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [sub for choice in action.choices.values() for sub in parsers(choice)]
    return found


def hand_written_flags() -> set[str]:
    """Every flag of a command that is not a field of a settings dataclass the command module uses."""
    found = set()
    for path in sorted((REPOSITORY / "minilth").glob("*.py")):
        module = importlib.import_module(f"minilth.{path.stem}")
        if not hasattr(module, "build_parser"):
            continue
        fields = {field.name for value in vars(module).values() if isinstance(value, type)
                  and dataclasses.is_dataclass(value) for field in dataclasses.fields(value)}
        found |= {action.option_strings[0] for parser in parsers(module.build_parser()) for action in parser._actions
                  if action.option_strings and action.dest not in fields | {"help"}}
    return found


def test_readme_lists_the_options_written_by_hand_and_every_other_flag_is_a_setting():
    listed = re.search(r"The options that are not settings of a run are written by hand in the\s+commands(.*?)\.\n",
                       section(read("README.md"), "Settings, declared once"), flags=re.S)
    assert listed, "README's sentence listing the hand-written options is gone"
    assert set(re.findall(r"--[a-z][\w-]*", listed.group(1))) == hand_written_flags()


def test_the_scans_see_what_the_docs_write():
    """The patterns above find what they look for in the forms the docs use (and nothing that only looks like it)."""
    text = ("See `minilth/model.py` and minilth/fast/, not github.com/x/minilth/y.py; `minilth.prune.rewind`,\n"
            "metadata.minilth.solution.\n```bash\npython -m minilth.sweep plan --output runs/grid \\\n"
            "    --seeds 0 1   # writes --nothing\n```\n`python -m minilth.controls --run r` and "
            "`torchrun -m minilth.transfer --masks a` --not-this\n")
    assert paths_named(text) == {"minilth/model.py", "minilth/fast/"}
    assert dotted_names(text) == {"minilth.prune.rewind", "minilth.sweep", "minilth.controls", "minilth.transfer"}
    assert [(module, rest.split()) for module, rest in commands(text)] == [
        ("minilth.sweep", ["plan", "--output", "runs/grid", "--seeds", "0", "1"]),
        ("minilth.controls", ["--run", "r"]), ("minilth.transfer", ["--masks", "a"])]
    assert resolves("minilth.prune.rewind") and resolves("minilth.data")
    assert not resolves("minilth.prune.pooler_magnitude_ratio") and not resolves("minilth.nowhere")


def test_read_the_code_gives_the_core_in_reading_order_with_true_sizes_within_the_budget():
    table = section(read("README.md"), "Read the code")
    rows = re.findall(r"\[`(minilth/[\w/]+\.py)`\]\([^)]*\) \| (\d[\d,]*) \|", table)
    assert [path for path, _ in rows] == ["minilth/model.py", "minilth/prune.py", "minilth/train.py",
                                          "minilth/ticket.py", "minilth/config.py"]  # the model, pruning, ...
    sizes = {path: int(size.replace(",", "")) for path, size in rows}
    for path, size in sizes.items():
        assert size == (REPOSITORY / path).read_bytes().count(b"\n"), f"README's size of {path}"
    total = re.search(r"\| \*\*([\d,]+)\*\* \|", table)
    assert total and int(total.group(1).replace(",", "")) == sum(sizes.values())
    assert sum(sizes.values()) <= 1500 and sizes["minilth/model.py"] <= 500


def test_readme_names_what_ticket_py_imports_from_the_lottery_package():
    row = next(line for line in section(read("README.md"), "Read the code").splitlines()
               if line.startswith("| `minilth/lottery/`"))
    seam = row.rsplit("|", 2)[1]
    tree = ast.parse((REPOSITORY / "minilth" / "ticket.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("lottery") for alias in node.names}
    assert set(re.findall(r"`(\w+)`", seam)) == imported


def test_the_imp_loop_in_readme_is_copied_from_ticket_py():
    ticket = (REPOSITORY / "minilth" / "ticket.py").read_text(encoding="utf-8")
    blocks = [code for language, code in FENCE.findall(section(read("README.md"), "The algorithm, in the code"))
              if language == "python"]
    assert len(blocks) == 2
    for block in blocks:
        assert block in ticket, f"README's block is not in ticket.py as it is:\n{block}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_minilth_import_in_a_doc_exists(doc):
    for module, names in re.findall(r"^\s*from (minilth[\w.]*) import (.+)$", read(doc), flags=re.M):
        loaded = importlib.import_module(module)
        for name in (n.strip() for n in names.strip("()").split(",")):
            assert hasattr(loaded, name), f"{doc} imports {name} from {module}, which has no such name"


def runnable_blocks(doc: str) -> list[str]:
    """The Python blocks a doc marks runnable (an HTML comment `<!-- runnable: ... -->` on the line before)."""
    return re.findall(r"^<!-- runnable: .*? -->\n```python\n(.*?)^```", read(doc), flags=re.S | re.M)


def on_the_fixtures(block: str, folder: Path, env, tiny_checkpoint: Path) -> str:
    """README's block with a tiny random BERT for MiniLM, on the GLUE samples of tests/fixtures (STS-B: 40 pairs)."""
    env.setenv("MINILTH_DATA_DIR", str(REPOSITORY / "tests" / "fixtures" / "glue"))
    assert '"all-MiniLM-L6-v2"' in block
    return block.replace('"all-MiniLM-L6-v2"', repr(str(tiny_checkpoint)))


def on_small_masks(block: str, folder: Path, env, tiny_checkpoint: Path) -> str:
    """results/README's block as it is, on two small masks saved at the paths it reads (the real ones are not kept in
    the repository): both prune the first half of a (32 weights); the first b's first half (16), the second b's
    other half."""
    import torch

    from minilth.checkpoints import save_mask
    from minilth.prune import Mask
    first_half = lambda rows: torch.arange(rows * 8).reshape(rows, 8) >= rows * 4  # noqa: E731  kept: the second half
    a, b = first_half(8), first_half(4)
    save_mask(Mask({"a.weight": a, "b.weight": b}), folder / "results/table2_minilm/stsb/rounds/round_02/mask.pt")
    save_mask(Mask({"a.weight": a, "b.weight": ~b}),
              folder / "results/transfer_minilm/masks/cola/rounds/round_02/mask.pt")
    return block


RUNNABLE = {"README.md": on_the_fixtures, "results/README.md": on_small_masks}  # what each doc's blocks run on


def test_the_docs_mark_the_blocks_that_run():
    assert {doc for doc in DOCS if runnable_blocks(doc)} == set(RUNNABLE)
    assert len(runnable_blocks("README.md")) == 1 and "finetune(" in runnable_blocks("README.md")[0]
    assert "load_mask(" in runnable_blocks("results/README.md")[0]


@pytest.mark.parametrize("doc", sorted(RUNNABLE))
def test_the_blocks_a_doc_marks_runnable_run(doc, tmp_path, monkeypatch, capsys, tiny_checkpoint):
    monkeypatch.chdir(tmp_path)
    for block in runnable_blocks(doc):
        block = RUNNABLE[doc](block, tmp_path, monkeypatch, tiny_checkpoint)
        exec(compile(block, f"{doc} (a runnable block)", "exec"), {"__name__": "__doc_block__"})
    if doc == "results/README.md":  # 0.986 with the real masks; these share a's 32 pruned weights of 48
        assert float(capsys.readouterr().out.split()[-1]) == pytest.approx(32 / 48)


def test_the_notebooks_parameter_cells_open_as_tutorials_readme_says():
    import nbformat
    assert "Notebook 1's names the checkpoint (`MODEL`); those of\nnotebooks 2 to 7 begin with `PRESET`" in \
        read("tutorials/README.md")
    notebooks = sorted((REPOSITORY / "tutorials").glob("0[1-7]_*.ipynb"))
    assert len(notebooks) == 7
    for number, path in enumerate(notebooks, start=1):
        cells = nbformat.read(path, as_version=4).cells
        parameters = next(cell.source for cell in cells if "parameters" in cell.metadata.get("tags", []))
        first = re.search(r"^([A-Z_]+) =", parameters, flags=re.M).group(1)
        assert first == ("MODEL" if number == 1 else "PRESET"), path.name
