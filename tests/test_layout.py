"""The package's layering, as README's "Read the code" describes it: a short core, libraries beside it, commands on top.

Every module under minilth/ is read (subpackages too: "data.tasks", "lottery.baselines"; a package's __init__ is the
package, "data"; minilth/__init__.py is ""), and every form of import in it is seen, at the top or inside functions:
`from .x import y`, `from ..x import y`, `from . import x`, `from minilth.x import y`, `from minilth import x`,
`import minilth.x`, `import minilth.x.y as z`. Each rule is a function of a package folder: the tests run it on
minilth, and on small packages written to a temporary folder with one violation planted, which it must report.
"""
import ast
import importlib
from pathlib import Path
from typing import NamedTuple

import pytest

MINILTH = Path(__file__).resolve().parents[1] / "minilth"
# The modules that are command lines (a top-level `main`): a new command must be declared here, and in README's list.
COMMANDS = {"find_ticket", "controls", "transfer", "sweep", "weights", "grade", "train_mlm_head", "inside_ticket"}
CORE = ("model", "prune", "train", "config", "ticket")
CORE_LINES, MODEL_LINES, TICKET_LINES = 1500, 500, 300


class Import(NamedTuple):
    source: str  # the module imported (its name inside the package)
    name: str | None  # the name taken from it (`from source import name`); None for `import minilth.x` and submodules


class Package:
    """The modules of a package folder named minilth (the real one, or one a test writes) and their imports."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.modules = {self.module_name(path): path for path in sorted(folder.rglob("*.py"))}

    def module_name(self, path: Path) -> str:
        """'data.tasks' for minilth/data/tasks.py, 'data' for minilth/data/__init__.py, '' for minilth/__init__.py."""
        parts = list(path.relative_to(self.folder).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def resolve(self, module: str, level: int, target: str | None) -> str:
        """The module a relative import `from <level dots><target>` in `module` names."""
        is_package = self.modules[module].name == "__init__.py"
        package = [part for part in (module.split(".") if is_package else module.split(".")[:-1]) if part]
        assert level - 1 <= len(package), f"{module}: `from {'.' * level}{target or ''}` leaves the package"
        return ".".join(package[:len(package) - (level - 1)] + ([target] if target else []))

    def imports(self, module: str) -> list[Import]:
        """Every minilth import of a module, anywhere in it (functions, branches too)."""
        found = []
        for node in ast.walk(ast.parse(self.modules[module].read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    source = self.resolve(module, node.level, node.module)
                elif node.module == "minilth" or (node.module or "").startswith("minilth."):
                    source = node.module.removeprefix("minilth").lstrip(".")
                else:
                    continue
                for alias in node.names:
                    submodule = f"{source}.{alias.name}" if source else alias.name
                    if submodule in self.modules:  # `from . import distributed`, `from minilth import files`
                        found.append(Import(submodule, alias.name))
                    else:
                        assert source in self.modules, f"{module}: `from {source or 'minilth'} import ...`: no such module"
                        found.append(Import(source, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "minilth" or alias.name.startswith("minilth."):
                        source = alias.name.removeprefix("minilth").lstrip(".")
                        assert source in self.modules, f"{module}: `import {alias.name}`: no such module"
                        found.append(Import(source, None))
        return found

    def graph(self, with_packages: bool = False) -> dict[str, set[str]]:
        """module -> the modules it imports. `with_packages`: also the packages each import runs first (importing
        data.tasks runs data/__init__.py), except the importer's own packages, which are already running."""
        edges = {}
        for module in self.modules:
            imported = {item.source for item in self.imports(module)}
            if with_packages:
                imported |= {package for source in imported for package in ancestors(source)}
                imported -= set(ancestors(module))
            edges[module] = imported - {module}
        return edges


def ancestors(module: str) -> list[str]:
    """The packages Python imports before `module`: 'data' and '' for 'data.tasks'."""
    parts = module.split(".") if module else []
    return [".".join(parts[:i]) for i in range(len(parts) - 1, -1, -1)]


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


# --- the rules -------------------------------------------------------------------------------------------------------


def import_circle(package: Package, with_packages: bool) -> list[str] | None:
    return find_circle(package.graph(with_packages))


def command_problems(package: Package, commands: set[str]) -> list[str]:
    """The modules with a top-level `main` that are not declared commands, the declared ones without, and every
    import of a command by another module."""
    with_main = {module for module, path in package.modules.items()
                 if any(isinstance(node, ast.FunctionDef) and node.name == "main"
                        for node in ast.parse(path.read_text(encoding="utf-8")).body)}
    problems = [f"{module} has a main but is not declared a command" for module in sorted(with_main - commands)]
    problems += [f"{module} is declared a command but has no main" for module in sorted(commands - with_main)]
    problems += [f"{module} imports the command {source}" for module, imported in sorted(package.graph().items())
                 for source in sorted(imported & commands)]
    return problems


def private_imports(package: Package) -> list[str]:
    return [f"{module} imports {item.name} from {item.source}" for module in package.modules
            for item in package.imports(module) if item.name and item.name.startswith("_")
            and not item.name.startswith("__")]


def wc_lines(path: Path) -> int:
    """Lines as `wc -l` counts them: newline characters."""
    return path.read_bytes().count(b"\n")


def oversized_core(package: Package) -> dict[str, int] | None:
    """The core's line counts when they exceed the budget (the core, the model or the IMP loop), else None."""
    lines = {name: wc_lines(package.modules[name]) for name in CORE}
    over = sum(lines.values()) > CORE_LINES or lines["model"] > MODEL_LINES or lines["ticket"] > TICKET_LINES
    return lines if over else None


# --- on minilth ------------------------------------------------------------------------------------------------------

PACKAGE = Package(MINILTH)


def test_every_module_is_read_subpackages_included():
    assert {"", "model", "ticket", "data", "data.tasks", "lottery.baselines", "lottery.report", "structured",
            "structured.importance", "checkpoints.masks", "fast.tokens", "scale.grid"} <= set(PACKAGE.modules)
    assert PACKAGE.modules["data"] == MINILTH / "data" / "__init__.py"
    assert len(PACKAGE.modules) == len(list(MINILTH.rglob("*.py")))


def test_the_import_scan_reads_the_real_modules():
    sources = lambda module: {item.source for item in PACKAGE.imports(module)}  # noqa: E731
    assert {"fast", "errors"} <= sources("model")  # `from . import fast`, `from .errors import ...`
    assert {"data.batches", "scale.distributed", "checkpoints"} <= sources("train")  # `from .scale import distributed`
    assert {"prune", "settings", "structured.importance"} <= sources("structured.pruning")  # `from ..prune import`
    assert "lottery.run_folder" in sources("ticket")
    assert sources("course") == {"course.check"}  # `from . import check` in a package's __init__


@pytest.mark.parametrize("with_packages", [False, True], ids=["imports", "imports and the packages they run"])
def test_no_import_circles(with_packages):
    circle = import_circle(PACKAGE, with_packages)
    assert circle is None, "import circle: " + " -> ".join(name or "minilth" for name in circle)


def test_the_commands_are_the_modules_with_a_main_and_nothing_imports_them():
    assert command_problems(PACKAGE, COMMANDS) == [], "a new command must be declared in COMMANDS (and README's list)"


def test_no_module_imports_another_modules_private_names():
    assert private_imports(PACKAGE) == [], "make the name public or move it"


def test_report_is_pure_rows_in_text_csv_png_out():
    assert PACKAGE.graph()["lottery.report"] <= {"files", "data.tasks"}, PACKAGE.graph()["lottery.report"]


def test_the_task_table_is_data():
    assert PACKAGE.graph()["data.tasks"] <= {"errors"}, PACKAGE.graph()["data.tasks"]


def test_the_core_reads_in_an_afternoon():
    assert oversized_core(PACKAGE) is None


@pytest.mark.parametrize("package", ["data", "checkpoints", "structured", "fast"])
def test_every_name_a_package_exports_exists(package):
    module = importlib.import_module(f"minilth.{package}")
    for name in module.__all__:
        assert hasattr(module, name), f"minilth.{package}.{name}"


# --- on packages with a planted violation ----------------------------------------------------------------------------


def write_package(folder: Path, sources: dict[str, str]) -> Package:
    """Writes a package named minilth under `folder` ({"data/tasks.py": source, ...}; every folder gets an
    __init__.py) and returns it read as the rules read minilth."""
    root = folder / "minilth"
    for name, source in {"__init__.py": "", **sources}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in [p for p in path.parents if p.is_relative_to(root)]:
            (parent / "__init__.py").touch()
        path.write_text(source, encoding="utf-8")
    return Package(root)


# the same edge, a.py importing b, written every way minilth's modules write imports (and in functions and classes)
EVERY_FORM = ["from .b import g", "from . import b", "from minilth.b import g", "from minilth import b",
              "import minilth.b", "import minilth.b as bee", "def later():\n    if True:\n        from .b import g",
              "class A:\n    def f(self):\n        import minilth.b"]


@pytest.mark.parametrize("form", EVERY_FORM, ids=lambda form: " ".join(form.split()))
def test_a_circle_is_found_whatever_form_its_imports_take(tmp_path, form):
    back = "def g():\n    from .a import f\n"  # the circle's other edge, inside a function
    assert import_circle(write_package(tmp_path / "circle", {"a.py": form + "\nf = 1\n", "b.py": back}),
                         with_packages=False) == ["a", "b", "a"]
    assert import_circle(write_package(tmp_path / "line", {"a.py": form + "\nf = 1\n", "b.py": "g = 1\n"}),
                         with_packages=False) is None


def test_a_circle_through_a_package_that_an_import_runs_first_is_found(tmp_path):
    # q imports p.leaf, which runs p/__init__.py first; p/__init__.py imports q
    package = write_package(tmp_path, {"q.py": "from .p.leaf import v\nw = 1\n", "p/__init__.py": "from ..q import w\n",
                                       "p/leaf.py": "v = 1\n"})
    assert import_circle(package, with_packages=False) is None
    assert import_circle(package, with_packages=True) == ["p", "q", "p"]


@pytest.mark.parametrize("form", ["import minilth.tool", "from minilth.tool import main", "from . import tool",
                                  "def f():\n    from .tool import main"], ids=lambda form: " ".join(form.split()))
def test_a_library_module_importing_a_command_is_reported(tmp_path, form):
    package = write_package(tmp_path, {"tool.py": "def main():\n    return 0\n", "library.py": form + "\n"})
    assert command_problems(package, {"tool"}) == ["library imports the command tool"]


def test_an_undeclared_command_and_a_declared_one_without_main_are_reported(tmp_path):
    package = write_package(tmp_path, {"tool.py": "def main():\n    return 0\n", "other.py": "x = 1\n"})
    assert command_problems(package, {"other"}) == ["tool has a main but is not declared a command",
                                                    "other is declared a command but has no main"]


@pytest.mark.parametrize("path, form", [("user.py", "from .helpers import _secret"),
                                        ("deep/user.py", "from ..helpers import _secret"),
                                        ("deep/user.py", "def f():\n    from minilth.helpers import _secret")],
                         ids=["from .", "from ..", "from minilth, in a function"])
def test_an_import_of_another_modules_private_name_is_reported(tmp_path, path, form):
    package = write_package(tmp_path, {"helpers.py": "_secret = 1\n__version__ = 1\n",
                                       path: "from minilth.helpers import __version__\n" + form + "\n"})
    user = package.module_name(package.folder / path)
    assert private_imports(package) == [f"{user} imports _secret from helpers"]


@pytest.mark.parametrize("source", ["from .nowhere import x", "import minilth.nowhere", "from minilth.a.x import y"])
def test_an_import_of_no_module_stops_the_scan(tmp_path, source):
    package = write_package(tmp_path, {"a.py": source + "\n"})
    with pytest.raises(AssertionError, match="no such module"):
        package.imports("a")


@pytest.mark.parametrize("oversized, lines", [("model", MODEL_LINES + 1), ("ticket", TICKET_LINES + 1),
                                              ("prune", CORE_LINES)])
def test_a_core_over_its_budget_is_reported(tmp_path, oversized, lines):
    within = {f"{name}.py": "x = 1\n" * 100 for name in CORE}
    assert oversized_core(write_package(tmp_path / "within", within)) is None
    package = write_package(tmp_path / "over", {**within, f"{oversized}.py": "x = 1\n" * lines})
    assert oversized_core(package)[oversized] == lines


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
