"""The package's layering, as README's "Read the code" describes it: a short core, libraries beside it, commands on top.

Every module under minilth/ is read (subpackages too: "data.tasks", "lottery.baselines"; a package's __init__ is the
package, "data"; minilth/__init__.py is ""), and every form of import in it is seen, at the top or inside functions:
`from .x import y`, `from ..x import y`, `from . import x`, `from minilth.x import y`, `from minilth import x`,
`import minilth.x`, `import minilth.x.y as z`.
"""
import ast
from pathlib import Path
from typing import NamedTuple

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minilth"
# The modules that are command lines (a top-level `main`): a new command must be declared here, and in README's list.
COMMANDS = {"find_ticket", "controls", "transfer", "sweep", "weights", "grade", "inside_ticket"}
CORE = ("model", "prune", "train", "config", "ticket")
CORE_LINES, MODEL_LINES, TICKET_LINES = 1500, 500, 300


def module_name(path: Path) -> str:
    """'data.tasks' for minilth/data/tasks.py, 'data' for minilth/data/__init__.py, '' for minilth/__init__.py."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


class Import(NamedTuple):
    source: str  # the minilth module imported (its name without 'minilth.')
    name: str | None  # the name taken from it (`from source import name`); None for `import minilth.x` and submodules


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def resolve(module: str, level: int, target: str | None) -> str:
    """The absolute module name (without 'minilth.') of a relative import `from <level dots><target>` in `module`."""
    package = module.split(".") if is_package(module) else module.split(".")[:-1]
    package = [part for part in package if part]
    assert level - 1 <= len(package), f"{module}: `from {'.' * level}{target or ''}` leaves the package"
    base = package[:len(package) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_in(module: str, text: str) -> list[Import]:
    """Every minilth import of `text`, read as the source of `module`, anywhere in it (functions, branches too)."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                source = resolve(module, node.level, node.module)
            elif node.module == "minilth" or (node.module or "").startswith("minilth."):
                source = node.module.removeprefix("minilth").lstrip(".")
            else:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}" if source else alias.name
                if submodule in MODULES:  # `from . import distributed`, `from minilth import files`
                    found.append(Import(submodule, alias.name))
                else:
                    assert source in MODULES, f"{module}: `from {source or 'minilth'} import ...`: no such module"
                    found.append(Import(source, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "minilth" or alias.name.startswith("minilth."):
                    source = alias.name.removeprefix("minilth").lstrip(".")
                    assert source in MODULES, f"{module}: `import {alias.name}`: no such module"
                    found.append(Import(source, None))
    return found


def imports(module: str) -> list[Import]:
    return imports_in(module, MODULES[module].read_text(encoding="utf-8"))


def ancestors(module: str) -> list[str]:
    """The packages Python imports before `module`: 'data' and '' for 'data.tasks'."""
    parts = module.split(".") if module else []
    return [".".join(parts[:i]) for i in range(len(parts) - 1, -1, -1)]


def graph(with_packages: bool = False) -> dict[str, set[str]]:
    """module -> the minilth modules it imports. `with_packages`: also the packages each import runs first
    (importing data.tasks runs data/__init__.py), except the importer's own packages, which are already running."""
    edges = {}
    for module in MODULES:
        imported = {item.source for item in imports(module)}
        if with_packages:
            imported |= {package for source in imported for package in ancestors(source)}
            imported -= set(ancestors(module))
        edges[module] = imported - {module}
    return edges


def find_circle(edges: dict[str, set[str]]) -> list[str] | None:
    """Returns one import circle (a list of modules, first == last), or None."""
    visiting, done = [], set()

    def visit(module):
        if module in done:
            return None
        if module in visiting:
            return visiting[visiting.index(module):] + [module]
        visiting.append(module)
        for imported in sorted(edges.get(module, ())):
            circle = visit(imported)
            if circle:
                return circle
        visiting.pop()
        done.add(module)
        return None

    for module in sorted(edges):
        circle = visit(module)
        if circle:
            return circle
    return None


def defines_main(path: Path) -> bool:
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "main"
               for node in ast.parse(path.read_text(encoding="utf-8")).body)


def wc_lines(path: Path) -> int:
    """Lines as `wc -l` counts them: newline characters."""
    return path.read_bytes().count(b"\n")


def test_every_module_is_read_subpackages_included():
    assert {"", "model", "ticket", "data", "data.tasks", "lottery.baselines", "lottery.report", "structured",
            "structured.importance", "checkpoints.masks", "fast.tokens", "scale.grid"} <= set(MODULES)
    assert MODULES["data"] == PACKAGE / "data" / "__init__.py" and MODULES["controls"] == PACKAGE / "controls.py"
    assert len(MODULES) == len(list(PACKAGE.rglob("*.py")))


@pytest.mark.parametrize("module, text, expected", [
    ("lottery.verdict", "from .plan import Clock", [("lottery.plan", "Clock")]),
    ("lottery.verdict", "from ..prune import Mask, _private", [("prune", "Mask"), ("prune", "_private")]),
    ("structured", "from ..data.tasks import get_task", [("data.tasks", "get_task")]),
    ("structured.units", "from . import importance", [("structured.importance", "importance")]),
    ("model", "from . import fast, files", [("fast", "fast"), ("files", "files")]),
    ("lottery", "from .. import ticket", [("ticket", "ticket")]),
    ("model", "from .structured import shrink, STRUCTURES",  # a submodule and a name of the package, both seen
     [("structured.shrink", "shrink"), ("structured", "STRUCTURES")]),
    ("model", "from minilth.lottery.baselines import TABLE_2", [("lottery.baselines", "TABLE_2")]),
    ("model", "from minilth.lottery import baselines", [("lottery.baselines", "baselines")]),
    ("model", "from minilth import errors", [("errors", "errors")]),
    ("model", "import minilth.files", [("files", None)]),
    ("model", "import minilth.checkpoints.masks as masks", [("checkpoints.masks", None)]),
    ("model", "def f():\n    if True:\n        from .sweep import main\n", [("sweep", "main")]),
    ("model", "class A:\n    def f(self):\n        import minilth.controls\n", [("controls", None)]),
    ("model", "import torch\nfrom torch import nn\nimport minilthx", []),  # other packages are not minilth's
])
def test_the_import_scan_sees_every_form_of_import(module, text, expected):
    assert [tuple(item) for item in imports_in(module, text)] == expected


def test_the_import_scan_reads_the_real_modules():
    sources = lambda module: {item.source for item in imports(module)}  # noqa: E731
    assert {"fast", "errors"} <= sources("model")  # `from . import fast`, `from .errors import ...`
    assert {"data.batches", "scale.distributed", "checkpoints"} <= sources("train")  # `from .scale import distributed`
    assert {"prune", "settings", "structured.importance"} <= sources("structured.pruning")  # `from ..prune import`
    assert "lottery.run_folder" in sources("ticket")
    assert sources("course") == {"course.check"}  # `from . import check` in a package's __init__


@pytest.mark.parametrize("text", ["from .nowhere import x", "import minilth.nowhere", "from minilth.model.x import y"])
def test_an_import_of_no_module_is_an_error_of_the_scan(text):
    with pytest.raises(AssertionError, match="no such module"):
        imports_in("model", text)


def test_the_circle_search_finds_circles_through_functions_and_packages():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert ancestors("data.tasks") == ["data", ""] and ancestors("model") == [""]
    inside = imports_in("ticket", "def later():\n    from .controls import run\n")  # an import inside a function
    edges = {"ticket": {item.source for item in inside}, "controls": {"ticket"}}
    assert find_circle(edges) == ["controls", "ticket", "controls"]


@pytest.mark.parametrize("with_packages", [False, True], ids=["imports", "imports and the packages they run"])
def test_no_import_circles(with_packages):
    circle = find_circle(graph(with_packages))
    assert circle is None, "import circle: " + " -> ".join(name or "minilth" for name in circle)


def test_the_commands_are_the_modules_with_a_main_and_nothing_imports_them():
    with_main = {module for module, path in MODULES.items() if defines_main(path)}
    assert with_main == COMMANDS, (f"commands undeclared: {sorted(with_main - COMMANDS)}, declared without a main: "
                                   f"{sorted(COMMANDS - with_main)}: a new command must be declared in COMMANDS "
                                   "(and README's list)")
    for module, imported in graph().items():
        assert not imported & COMMANDS, f"{module} imports the command module(s) {imported & COMMANDS}"


def test_no_module_imports_another_modules_private_names():
    for module in MODULES:
        for item in imports(module):
            private = item.name and item.name.startswith("_") and not item.name.startswith("__")
            assert not private, f"{module} imports {item.name} from {item.source}: make it public or move it"


def test_report_is_pure_rows_in_text_csv_png_out():
    assert graph()["lottery.report"] <= {"files", "data.tasks"}, graph()["lottery.report"]


def test_the_task_table_is_data():
    assert graph()["data.tasks"] <= {"errors"}, graph()["data.tasks"]


def test_the_core_reads_in_an_afternoon():
    lines = {name: wc_lines(PACKAGE / f"{name}.py") for name in CORE}
    assert sum(lines.values()) <= CORE_LINES and lines["model"] <= MODEL_LINES and lines["ticket"] <= TICKET_LINES, \
        lines


def test_lines_are_counted_as_wc_does(tmp_path):
    (tmp_path / "a.py").write_bytes(b"one\ntwo\n\nfour")  # no newline at the end: wc -l says 3
    (tmp_path / "b.py").write_bytes(b"x = 1\x0c\ny = '\xe2\x80\xa8'\n")  # form feed, U+2028: not line breaks to wc
    assert wc_lines(tmp_path / "a.py") == 3 and wc_lines(tmp_path / "b.py") == 2


@pytest.mark.parametrize("package", ["data", "checkpoints", "structured", "fast", "anatomy"])
def test_every_name_a_package_exports_exists(package):
    import importlib
    exported = importlib.import_module(f"minilth.{package}").__all__
    for name in exported:
        assert hasattr(importlib.import_module(f"minilth.{package}"), name), f"minilth.{package}.{name}"
