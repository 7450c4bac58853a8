"""README says what the code is: the core's files and sizes, the IMP loop quoted from ticket.py, imports that exist."""
import importlib
import re
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
README = (REPOSITORY / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """Returns the text of README's `## title` section."""
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def code_blocks(text: str, language: str = "python") -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_read_the_code_lists_the_core_files_with_their_true_sizes_within_the_budget():
    rows = re.findall(r"\[`(minilth/[\w/]+\.py)`\]\([^)]*\) \| (\d[\d,]*) \|", section("Read the code"))
    assert [path for path, _ in rows] == ["minilth/model.py", "minilth/prune.py", "minilth/train.py",
                                          "minilth/ticket.py", "minilth/config.py"]
    sizes = {path: int(size.replace(",", "")) for path, size in rows}
    for path, size in sizes.items():
        assert size == len((REPOSITORY / path).read_text(encoding="utf-8").splitlines()), f"README's size of {path}"
    total = re.search(r"\| \*\*([\d,]+)\*\* \|", section("Read the code"))
    assert total and int(total.group(1).replace(",", "")) == sum(sizes.values())
    assert sum(sizes.values()) <= 1500 and sizes["minilth/model.py"] <= 500 and sizes["minilth/ticket.py"] <= 300


def test_the_imp_loop_in_readme_is_copied_from_ticket_py():
    ticket = (REPOSITORY / "minilth" / "ticket.py").read_text(encoding="utf-8")
    blocks = code_blocks(section("The algorithm, in the code"))
    assert len(blocks) == 2
    for block in blocks:
        assert block in ticket, f"README's block is not in ticket.py as it is:\n{block}"


def test_every_minilth_import_in_readme_exists():
    imports = re.findall(r"^from (minilth[\w.]*) import (.+)$", README, flags=re.M)
    assert imports
    for module, names in imports:
        loaded = importlib.import_module(module)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(loaded, name), f"README imports {name} from {module}, which has no such name"


def test_every_command_readme_runs_is_a_module_with_a_main():
    commands = set(re.findall(r"python -m (minilth(?:\.\w+)+)", README))
    assert {"minilth.find_ticket", "minilth.controls", "minilth.transfer", "minilth.sweep"} <= commands
    for command in commands:
        assert hasattr(importlib.import_module(command), "main"), command
