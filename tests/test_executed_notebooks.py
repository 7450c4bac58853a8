"""The executed copies of the lessons and labs: one per source notebook, stamped, readable in a browser (no widgets,
figures as PNG, small), linked from the READMEs; benchmarks/execute_notebooks.py makes them."""
import importlib.util
from pathlib import Path

import nbformat
import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
SCRIPT = REPOSITORY / "benchmarks" / "execute_notebooks.py"
MAX_BYTES = 1_500_000  # figures at screen resolution keep a copy well under this


def load_script():
    spec = importlib.util.spec_from_file_location("execute_notebooks", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def executed_copies() -> list[Path]:
    return sorted((REPOSITORY / "tutorials" / "executed").glob("*.ipynb")) + \
        sorted((REPOSITORY / "course" / "solved").glob("*.ipynb"))


def test_a_copy_is_stamped_and_keeps_what_a_browser_shows():
    script = load_script()
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("See [notebook 4](04_finding_a_ticket.ipynb), "
                                                    "[the code](../minilth/ticket.py), [a site](https://a.b/c) "
                                                    "and [below](#results)."),
                      nbformat.v4.new_code_cell("x")]
    notebook.cells[1].outputs = [
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "1"},
                                                     "text/plain": "fine-tune:   0%|   | 0/180"}),
        nbformat.v4.new_output("stream", name="stderr", text="\r 10%|#  |\r 50%|#####  |\r100%|##########|\ndone\n"),
        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})]
    notebook.cells[1].metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    notebook.metadata["widgets"] = {"state": {}}
    record = {"date": "2026-12-07", "cpu": "AMD EPYC, 2 cores", "torch": "2.13.0", "commit": "abc1234", "seconds": 12,
              "load": "load average 1.00, 1.00, 1.00", "solved": False, "source": "08_inside_a_ticket.ipynb"}
    copy = script.for_reading(notebook, record)
    stamp = copy.cells[0].source
    assert all(text in stamp for text in ("2026-12-07", "AMD EPYC, 2 cores", "abc1234",
                                          "(../08_inside_a_ticket.ipynb)"))
    assert copy.metadata["minilth"]["executed"] == record and "widgets" not in copy.metadata
    relinked = ("See [notebook 4](../04_finding_a_ticket.ipynb), [the code](../../minilth/ticket.py), "
                "[a site](https://a.b/c) and [below](#results).")
    assert copy.cells[1].source == relinked
    outputs = copy.cells[2].outputs
    assert [output.output_type for output in outputs] == ["stream", "display_data"]  # the widget is left out
    assert outputs[0].text == "100%|##########|\ndone\n"  # the progress bar's last frame
    assert "execution" not in copy.cells[2].metadata


def test_every_executed_copy_is_linked_from_the_readmes_and_every_link_has_its_copy():
    script = load_script()
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    tutorials_readme = (REPOSITORY / "tutorials" / "README.md").read_text(encoding="utf-8")
    assert "(tutorials/executed/)" in readme
    assert executed_copies(), "no executed copy: run python benchmarks/execute_notebooks.py"
    for source, copy, _ in script.sources():
        link = f"({copy.relative_to(REPOSITORY / 'tutorials').as_posix()})" if copy.parent.name == "executed" \
            else f"(../{copy.relative_to(REPOSITORY).as_posix()})"
        assert (link in tutorials_readme) == copy.is_file(), f"tutorials/README.md and {copy.name} disagree"


@pytest.mark.parametrize("path", executed_copies(), ids=lambda path: path.name)
def test_an_executed_copy_is_stamped_readable_and_small(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    record = notebook.metadata["minilth"]["executed"]
    source = path.parent.parent / record["source"]
    assert source.is_file() and source.name == path.name
    assert all(record[key] for key in ("date", "cpu", "commit")) and "Executed copy" in notebook.cells[0].source
    assert record["solved"] == (path.parent.name == "solved")
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    source_code = [cell.source for cell in nbformat.read(source, as_version=4).cells if cell.cell_type == "code"]
    assert len(code) == len(source_code) and all(cell.execution_count for cell in code)  # every cell ran
    outputs = [output for cell in code for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    kinds = {kind for output in outputs for kind in output.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" not in kinds and "image/svg+xml" not in kinds
    assert path.stat().st_size < MAX_BYTES
