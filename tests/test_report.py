"""Table 2 numbers, the transfer heatmap's colours (sign of colour = sign of number), and life without matplotlib."""
import statistics
import sys

import pytest

from minilth.lottery.report import format_table2, table2, transfer_heatmap, write_csv

MRPC_RESULTS = {
    "random_pruning": [{"acc": 0.70, "f1": 0.80}, {"acc": 0.72, "f1": 0.81}, {"acc": 0.68, "f1": 0.79}],
    "imp": [{"acc": 0.84, "f1": 0.88}, {"acc": 0.86, "f1": 0.90}, {"acc": 0.85, "f1": 0.89}],
    "dense": [{"acc": 0.85, "f1": 0.89}, {"acc": 0.86, "f1": 0.90}, {"acc": 0.84, "f1": 0.88}],
    "standard_pruning": [{"acc": 0.83, "f1": 0.87}],
}


def test_table2_has_both_metrics_with_mean_std_min_max_in_percent():
    rows = table2(MRPC_RESULTS, "mrpc", sparsity=0.5)
    assert [r["setting"] for r in rows] == ["dense", "imp", "random_pruning", "standard_pruning"]  # paper order
    imp = rows[1]
    assert imp["sparsity"] == 0.5 and rows[0]["sparsity"] == 0.0 and imp["seeds"] == 3
    assert imp["acc_mean"] == pytest.approx(85.0) and imp["f1_mean"] == pytest.approx(89.0)
    assert imp["acc_std"] == pytest.approx(statistics.stdev([84, 86, 85]))
    assert (imp["acc_min"], imp["acc_max"]) == (pytest.approx(84.0), pytest.approx(86.0))
    assert rows[3]["acc_std"] == 0.0 and rows[3]["seeds"] == 1
    stsb = table2({"dense": [{"pearson": 0.8, "spearman": 0.9}]}, "stsb")
    assert stsb[0]["pearson_mean"] == pytest.approx(80.0) and stsb[0]["spearman_mean"] == pytest.approx(90.0)


def test_table2_text_and_markdown():
    rows = table2(MRPC_RESULTS, "mrpc", sparsity=0.5)
    text = format_table2(rows, "mrpc")
    lines = text.splitlines()
    assert lines[0].split() == ["setting", "sparsity", "seeds", "MRPC", "acc", "MRPC", "f1"]
    assert lines[2].startswith("IMP") and "50%" in lines[2] and "85.00 ± 1.00 [84.00, 86.00]" in lines[2]
    assert "89.00 ± 1.00 [88.00, 90.00]" in lines[2]
    markdown = format_table2(rows, "mrpc", markdown=True).splitlines()
    assert markdown[0] == "| setting | sparsity | seeds | MRPC acc | MRPC f1 |"
    assert markdown[1] == "|---|---|---|---|---|"
    assert len(markdown) == 2 + len(rows)


def test_write_csv(tmp_path):
    rows = table2(MRPC_RESULTS, "mrpc", sparsity=0.5)
    path = write_csv(rows, tmp_path / "t.csv")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("setting,label,sparsity,seeds,acc_mean,acc_std,acc_min,acc_max,f1_mean")
    assert lines[2].startswith("imp,IMP,0.5,3,85.0")


def cell_colour(figure, value):
    image = figure.axes[0].images[0]
    return image.cmap(image.norm(value))


def test_heatmap_colour_sign_matches_the_number(tmp_path):
    # Raw metrics against dense baselines: (rows: sources) x (columns: targets).
    matrix = [[60.0, 80.0, 50.0], [72.0, 74.0, 50.0]]
    baseline = [70.0, 75.0, 50.0]  # differences: [[-10, +5, 0], [+2, -1, 0]]
    figure = transfer_heatmap(matrix, ["rte", "mlm"], ["RTE", "MRPC", "CoLA"], tmp_path / "h.png", baseline=baseline)
    image = figure.axes[0].images[0]
    assert image.get_array().tolist() == [[-10.0, 5.0, 0.0], [2.0, -1.0, 0.0]]
    assert image.norm(0.0) == pytest.approx(0.5)  # zero is the centre of the map
    for value in (-10.0, -1.0):
        red, _, blue, _ = cell_colour(figure, value)
        assert image.norm(value) < 0.5 and red > blue, f"{value} is not on the negative (red) side"
    for value in (5.0, 2.0):
        red, _, blue, _ = cell_colour(figure, value)
        assert image.norm(value) > 0.5 and blue > red, f"{value} is not on the positive (blue) side"
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts == ["-10.0", "+5.0", "+0.0", "+2.0", "-1.0", "+0.0"]  # every cell annotated
    assert (tmp_path / "h.png").stat().st_size > 0
    assert (tmp_path / "h.csv").read_text().splitlines() == ["source,RTE,MRPC,CoLA", "rte,-10.0,5.0,0.0",
                                                              "mlm,2.0,-1.0,0.0"]


def test_heatmap_all_positive_stays_positive(tmp_path):
    # A norm fitted to the data range would paint the smallest positive cell as negative; a centred one must not.
    figure = transfer_heatmap([[1.0, 3.0]], ["a"], ["x", "y"], tmp_path / "p.png")
    for value in (1.0, 3.0):
        red, _, blue, _ = cell_colour(figure, value)
        assert blue > red
    figure = transfer_heatmap([[-1.0, float("nan")]], ["a"], ["x", "y"], tmp_path / "n.png")
    red, _, blue, _ = cell_colour(figure, -1.0)
    assert red > blue
    assert [t.get_text() for t in figure.axes[0].texts] == ["-1.0", "–"]


def test_without_matplotlib_the_csv_and_tables_still_come(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` raise ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError):
        import matplotlib.pyplot  # noqa: F401
    assert transfer_heatmap([[1.0, -2.0]], ["a"], ["x", "y"], tmp_path / "h.png", baseline=[0.5, 0.0]) is None
    assert not (tmp_path / "h.png").exists()
    assert (tmp_path / "h.csv").read_text().splitlines() == ["source,x,y", "a,0.5,-2.0"]
    assert "IMP" in format_table2(table2(MRPC_RESULTS, "mrpc", 0.5), "mrpc")


def test_result_figures_come_as_png_and_svg_with_fonts_readable_on_a_slide(tmp_path):
    """Both result plots write a PNG and an SVG beside it; every text is at least SLIDE_FONT_SIZE points, even
    those drawn smaller (the heatmap's 9-point cell labels); a .pdf path gives a PDF and its SVG."""
    import xml.etree.ElementTree as ElementTree

    from matplotlib.text import Text

    from minilth.lottery.report import SLIDE_FONT_SIZE, plot_sparsity_curve, save_figure

    figure = transfer_heatmap([[1.0, -2.0]], ["a"], ["x", "y"], tmp_path / "heatmap.png")
    summary = {"dense_mean": 0.8, "noise": 0.02, "metric": "pearson",
               "rounds": [{"sparsity": s, "mean": m, "std": 0.01} for s, m in ((0.0, 0.8), (0.5, 0.79))]}
    assert plot_sparsity_curve(summary, {"random_pruning": [(0.5, 0.06)]}, tmp_path / "summary.png", "STS-B")
    for name in ("heatmap", "summary"):
        assert (tmp_path / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert ElementTree.parse(tmp_path / f"{name}.svg").getroot().tag.endswith("svg")
    sizes = [text.get_fontsize() for text in figure.findobj(Text) if text.get_text()]
    assert sizes and min(sizes) >= SLIDE_FONT_SIZE
    save_figure(figure, tmp_path / "slide.pdf")
    assert (tmp_path / "slide.pdf").read_bytes().startswith(b"%PDF") and (tmp_path / "slide.svg").exists()
