"""The tutorials run top to bottom: each notebook is executed with quick settings and must not raise.

The quick settings are injected as papermill does: a cell placed right after the cell tagged
"parameters" overrides its values (tiny data caps, one short epoch, one pruning round). The
notebooks run from tutorials/ with TMPDIR pointing at pytest's temporary folder, so whatever they
write lands there and never in the repository.
"""
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = [
    "01_bert_from_scratch.ipynb",
    "02_finetuning_rte.ipynb",
    "03_one_round_of_imp.ipynb",
    "04_finding_a_ticket.ipynb",
    "05_is_it_a_winning_ticket.ipynb",
    "06_transfer_and_mlm_tickets.ipynb",
]
# The real MiniLM checkpoint and real GLUE data, but one optimiser step per fine-tuning.
QUICK = {"MAX_TRAIN_EXAMPLES": 8, "MAX_EVAL_EXAMPLES": 16, "EPOCHS": 1, "BATCH_SIZE": 8}
QUICK_PER_NOTEBOOK = {
    "01_bert_from_scratch.ipynb": {"MAX_EVAL_EXAMPLES": 4},
    "03_one_round_of_imp.ipynb": {"SPARSITY": 0.1},
    "04_finding_a_ticket.ipynb": {"TARGET_SPARSITY": 0.1},
    "05_is_it_a_winning_ticket.ipynb": {"TARGET_SPARSITY": 0.1, "SEEDS": [0]},
    "06_transfer_and_mlm_tickets.ipynb": {"TARGET_SPARSITY": 0.1, "TARGETS": ["rte", "mrpc"],
                                          "MLM_MAX_EXAMPLES": 8},
}


def parameter_cell_index(notebook) -> int:
    """Returns the index of the one cell tagged "parameters"."""
    tagged = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected exactly one cell tagged 'parameters', found {len(tagged)}"
    return tagged[0]


def quick_settings(name: str, parameter_source: str) -> dict:
    """Returns the quick overrides for a notebook: only names its parameter cell assigns."""
    wanted = {**QUICK, **QUICK_PER_NOTEBOOK.get(name, {})}
    assigned = set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", parameter_source, flags=re.M))
    stale = set(QUICK_PER_NOTEBOOK.get(name, {})) - assigned
    assert not stale, f"{name}: quick settings for {stale}, which its parameter cell does not define"
    return {key: value for key, value in wanted.items() if key in assigned}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch):
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    index = parameter_cell_index(notebook)
    overrides = quick_settings(name, notebook.cells[index].source)
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in overrides.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, injected)

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel inherits it: tempfile.mkdtemp() lands here
    monkeypatch.setenv("MINILTH_OFFLINE", "1")  # nothing to download: the checkpoint and data are local
    before = sorted(p.relative_to(TUTORIALS) for p in TUTORIALS.rglob("*"))
    client = NotebookClient(notebook, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(TUTORIALS)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    after = sorted(p.relative_to(TUTORIALS) for p in TUTORIALS.rglob("*"))
    assert after == before, f"{name} wrote into the repository: {set(after) - set(before)}"
    errors = [o for cell in notebook.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_clean(name):
    notebook = nbformat.read(TUTORIALS / name, as_version=4)
    nbformat.validate(notebook)
    parameter_cell_index(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name} is committed with outputs"
    assert notebook.cells[0].cell_type == "markdown", f"{name} should open with prose, not code"


def test_readme_lists_every_notebook_in_order():
    readme = (TUTORIALS / "README.md").read_text()
    positions = [readme.find(f"({name})") for name in NOTEBOOKS]
    assert -1 not in positions, "tutorials/README.md must link every notebook"
    assert positions == sorted(positions), "tutorials/README.md must list the notebooks in order"
