"""The package's layering: no import circles, no library module importing a command-line module, a pure report."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minilth"
COMMANDS = {"find_ticket"}  # modules that are only command lines


def imports_of(module: str) -> set[str]:
    """The minilth modules a module imports anywhere in its code (top level or inside functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("minilth."):
            found.add(node.module.split(".")[1])
    return found & modules()


def modules() -> set[str]:
    return {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


def test_no_import_circles():
    graph = {module: imports_of(module) for module in modules()}
    visiting, done = [], set()

    def visit(module):
        if module in done:
            return
        assert module not in visiting, "import circle: " + " -> ".join(visiting[visiting.index(module):] + [module])
        visiting.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_no_module_imports_a_command_line_module():
    for module in modules():
        assert not imports_of(module) & COMMANDS, f"{module} imports the command-line module(s) {imports_of(module) & COMMANDS}"


def test_report_is_pure_rows_in_text_csv_png_out():
    assert imports_of("report") <= {"files", "tasks"}, imports_of("report")


def test_the_task_table_is_data():
    assert imports_of("tasks") <= {"errors"}, imports_of("tasks")
