"""The tutorials run top to bottom, as on a fresh machine: each notebook is executed with quick settings
in an empty folder, where it downloads its data from a local mirror, and must not raise.

The quick settings are injected as papermill does: a cell placed right after the cell tagged
"parameters" overrides its values (tiny data caps, one short epoch, one pruning round). Each
notebook runs in pytest's temporary folder (its working folder and TMPDIR) with MINILTH_DATA_DIR
unset, so its data/glue is missing there and is downloaded from tests/data_mirror.py's mirror
(MINILTH_DATA_URL), and whatever it writes lands there and never in the repository.
"""
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from data_mirror import serve_data_mirror
from minilth.data.sources import GLUE_ARCHIVES
from minilth.data.tasks import TASKS

REPOSITORY = Path(__file__).resolve().parents[1]
TUTORIALS = REPOSITORY / "tutorials"
NOTEBOOKS = [
    "01_bert_from_scratch.ipynb",
    "02_finetuning.ipynb",
    "03_one_round_of_imp.ipynb",
    "04_finding_a_ticket.ipynb",
    "05_is_it_a_winning_ticket.ipynb",
    "06_transfer_and_mlm_tickets.ipynb",
    "07_structured_tickets.ipynb",
    "08_inside_a_ticket.ipynb",
]
# The real MiniLM checkpoint and the GLUE samples of tests/fixtures, but one optimiser step per fine-tuning: settings
# of TicketConfig merged into the notebook's CHANGES, and the lessons' own variables.
QUICK_CHANGES = {"max_train_examples": 8, "max_eval_examples": 16, "epochs": 1, "batch_size": 8}
QUICK_PER_NOTEBOOK = {
    "01_bert_from_scratch.ipynb": {"PAIRS": 4},
    "03_one_round_of_imp.ipynb": {"SPARSITY": 0.1},
    "04_finding_a_ticket.ipynb": {"CHANGES": {"target_sparsity": 0.1, "rate": 0.1}},
    "05_is_it_a_winning_ticket.ipynb": {"CHANGES": {"target_sparsity": 0.1, "rate": 0.1, "seeds": [0]}},
    "06_transfer_and_mlm_tickets.ipynb": {"TARGETS": ["stsb", "sst2"],
                                          "MLM": str(REPOSITORY / "results" / "mlm_ticket_minilm"),
                                          "MATRIX": str(REPOSITORY / "results" / "transfer_grid_minilm")},
    "07_structured_tickets.ipynb": {"SPARSITY": 0.25},
    "08_inside_a_ticket.ipynb": {"CHANGES": {"rate": 0.5, "seeds": [0, 1]}, "EXAMPLES": 4,
                                 "MLM": str(REPOSITORY / "results" / "mlm_ticket_minilm" / "inside" / "anatomy.json")},
}
MAX_PARAMETER_LINES = 8  # a student changes a few values, not a recipe


def parameter_cell_index(notebook) -> int:
    """Returns the index of the one cell tagged "parameters"."""
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected exactly one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def quick_settings(name: str, parameter_source: str) -> str:
    """Returns the cell injected after the parameter cell: CHANGES gets the quick settings, lesson variables theirs."""
    wanted = QUICK_PER_NOTEBOOK.get(name, {})
    assigned = set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", parameter_source, flags=re.M))
    stale = set(wanted) - assigned
    assert not stale, f"{name}: quick settings for {stale}, which its parameter cell does not define"
    lines = [f"{key} = {value!r}" for key, value in wanted.items() if key != "CHANGES"]
    if "CHANGES" in assigned:
        lines.append(f"CHANGES = {{**CHANGES, **{QUICK_CHANGES!r}, **{wanted.get('CHANGES', {})!r}}}")
    return "\n".join(lines)


def default_task(parameter_source: str) -> str:
    """The GLUE task the notebook's parameter cell names (its default TASK)."""
    match = re.search(r"^TASK\s*=\s*[\"'](\w+)[\"']", parameter_source, flags=re.M)
    assert match, "every notebook's parameter cell names its TASK"
    return match.group(1)


def repository_files() -> list[Path]:
    """Every path in the repository, less git's and Python's caches."""
    skipped = {".git", "__pycache__", ".pytest_cache"}
    return sorted(p.relative_to(REPOSITORY) for p in REPOSITORY.rglob("*") if not skipped & set(p.parts))


def new_cell(source: str, tag: str):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [tag]
    return cell


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom_downloading_its_data(name, tmp_path, monkeypatch):
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    index = parameter_cell_index(notebook)
    folder = TASKS[default_task(notebook.cells[index].source)].folder
    notebook.cells.insert(index + 1, new_cell(quick_settings(name, notebook.cells[index].source),
                                              "injected-parameters"))

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel inherits it: tempfile.mkdtemp() lands here
    monkeypatch.delenv("MINILTH_DATA_DIR", raising=False)  # the notebook's data/glue: tmp_path/data/glue
    before = repository_files()
    with serve_data_mirror(monkeypatch, tmp_path) as server:
        from minilth.data import sources as data_sources
        # The mirror serves the samples, not the official files: the kernel checks them against their own digests.
        digests = f"from minilth.data import sources as data_sources\ndata_sources.SHA256 = {data_sources.SHA256!r}"
        notebook.cells.insert(0, new_cell(digests, "injected-test-mirror"))
        client = NotebookClient(notebook, kernel_name="python3", timeout=600,
                                resources={"metadata": {"path": str(tmp_path)}})
        client.execute()  # raises CellExecutionError, naming the cell, on any error
        archive = f"/{GLUE_ARCHIVES[folder]}"
        assert server.requests[archive] == 1, f"{name} did not download {folder} from the mirror"

    assert (tmp_path / "data" / "glue" / folder / "dev.tsv").is_file()
    after = repository_files()
    assert after == before, f"{name} wrote into the repository: {set(after) - set(before)}"
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_clean(name):
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    nbformat.validate(notebook)
    parameters = notebook.cells[parameter_cell_index(notebook)].source
    assert len(parameters.splitlines()) <= MAX_PARAMETER_LINES, f"{name}'s parameter cell is longer than 8 lines"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name} is committed with outputs"
    assert notebook.cells[0].cell_type == "markdown", f"{name} should open with prose, not code"


def test_readme_lists_every_notebook_in_order():
    readme = (TUTORIALS / "README.md").read_text()
    positions = [readme.find(f"({name})") for name in NOTEBOOKS]
    assert -1 not in positions, "tutorials/README.md must link every notebook"
    assert positions == sorted(positions), "tutorials/README.md must list the notebooks in order"
