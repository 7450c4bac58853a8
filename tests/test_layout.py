"""The package's layering, as README's "Read the code" describes it: a short core, libraries beside it, commands on top.

Every module under minilth/ is read (subpackages too), and every form of import in it is seen: `from .x import y`,
`from ..x import y`, `from . import x`, `from minilth.x import y`, `import minilth.x` (at the top or inside functions).
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minilth"
COMMANDS = {"find_ticket", "controls", "transfer", "sweep", "weights"}  # modules that are command lines
CORE = ("model", "prune", "train", "config", "ticket")


def module_name(path: Path) -> str:
    """'data.tasks' for minilth/data/tasks.py, 'data' for minilth/data/__init__.py."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py")) if module_name(path)}


def resolve(module: str, level: int, target: str | None) -> str:
    """The absolute module name (without 'minilth.') of a relative import `from <level dots><target>` in `module`."""
    package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
    base = package[:len(package) - (level - 1)] if level > 1 else package
    return ".".join(base + ([target] if target else []))


def known(name: str) -> str | None:
    """The module a dotted name refers to: itself, or the package/module holding the imported attribute."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported minilth module, names taken from it) for every import statement of a module, anywhere in it."""
    found = []
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                source = resolve(module, node.level, node.module)
            elif (node.module or "").startswith("minilth"):
                source = node.module.removeprefix("minilth").lstrip(".")
            else:
                continue
            names = [alias.name for alias in node.names]
            submodules = [known(f"{source}.{n}" if source else n) for n in names]
            if any(sub and sub != known(source) for sub in submodules):  # `from . import distributed`
                found += [(sub, []) for sub in submodules if sub]
            elif known(source):
                found.append((known(source), names))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("minilth.") and known(alias.name.removeprefix("minilth.")):
                    found.append((known(alias.name.removeprefix("minilth.")), []))
    return found


def graph() -> dict[str, set[str]]:
    return {module: {source for source, _ in imports(module) if source and source != module} for module in MODULES}


def test_the_import_scan_sees_every_form_of_import():
    sources = lambda module: {source for source, _ in imports(module)}  # noqa: E731
    assert {"fast", "errors"} <= sources("model")  # `from . import fast`, `from .errors import ...`
    assert {"data.batches", "scale.distributed", "checkpoints"} <= sources("train")  # `from .scale import distributed`
    assert {"prune", "settings", "structured.importance"} <= sources("structured.pruning")  # `from ..prune import`
    assert "lottery.run_folder" in sources("ticket")
    assert known("lottery.controls.ControlSettings") == "lottery.controls"


def test_no_import_circles():
    edges = graph()
    visiting, done = [], set()

    def visit(module):
        if module in done:
            return
        assert module not in visiting, "import circle: " + " -> ".join(visiting[visiting.index(module):] + [module])
        visiting.append(module)
        for imported in sorted(edges[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)


def test_the_commands_are_the_modules_with_a_main_and_nothing_imports_them():
    with_main = {module for module, path in MODULES.items()
                 if any(isinstance(node, ast.FunctionDef) and node.name == "main"
                        for node in ast.parse(path.read_text(encoding="utf-8")).body)}
    assert with_main == COMMANDS, "a new command must be declared in COMMANDS (and README's list)"
    for module, imported in graph().items():
        assert not imported & COMMANDS, f"{module} imports the command module(s) {imported & COMMANDS}"


def test_no_module_imports_another_modules_private_names():
    for module in MODULES:
        for source, names in imports(module):
            private = [name for name in names if name.startswith("_") and not name.startswith("__")]
            assert not private, f"{module} imports {private} from {source}: make them public or move them"


def test_report_is_pure_rows_in_text_csv_png_out():
    assert graph()["lottery.report"] <= {"files", "data.tasks"}, graph()["lottery.report"]


def test_the_task_table_is_data():
    assert graph()["data.tasks"] <= {"errors"}, graph()["data.tasks"]


def test_the_core_reads_in_an_afternoon():
    lines = {name: len((PACKAGE / f"{name}.py").read_text(encoding="utf-8").splitlines()) for name in CORE}
    assert sum(lines.values()) <= 1500 and lines["model"] <= 450 and lines["ticket"] <= 300, lines


@pytest.mark.parametrize("package", ["data", "checkpoints", "structured"])
def test_every_name_a_package_exports_exists(package):
    import importlib
    exported = importlib.import_module(f"minilth.{package}").__all__
    for name in exported:
        assert hasattr(importlib.import_module(f"minilth.{package}"), name), f"minilth.{package}.{name}"
