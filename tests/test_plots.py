"""Tests for gsfc_tf.plots: figures draw the data they are given, stay inside the canvas, save."""

import json

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Rectangle
from astropy.table import Table
from PIL import Image

from gsfc_tf.evaluation import ImageBoxes, evaluate_detections, write_metrics_json
from gsfc_tf.plots import (
    CLASS_COLOURS,
    plot_clump_science,
    plot_completeness_by_size,
    plot_completeness_by_snr,
    plot_completeness_purity,
    plot_detections_grid,
    plot_training_size_curve,
)


def assert_renders_inside(fig, tmp_path):
    """Saves the figure and checks that nothing it draws runs off the canvas."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    drawn = fig.get_tightbbox(canvas.get_renderer())  # inches, drawn artists only
    page = fig.bbox_inches
    assert drawn.x0 >= page.x0 - 0.02 and drawn.y0 >= page.y0 - 0.02, (drawn, page)
    assert drawn.x1 <= page.x1 + 0.02 and drawn.y1 <= page.y1 + 0.02, (drawn, page)
    path = tmp_path / "figure.png"
    fig.savefig(path, dpi=60)
    with Image.open(path) as image:
        assert image.size[0] > 100 and image.size[1] > 100


@pytest.fixture(scope="module")
def galaxies():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(5)]
    truths = [ImageBoxes([[5, 5, 20, 20], [30, 30, 50, 44]][: i % 3], [0, 1][: i % 3]) for i in range(5)]
    predictions = [ImageBoxes([[6, 5, 21, 20], [0, 40, 8, 48], [30, 31, 50, 45]], [0, 1, 1], [0.9, 0.05, 0.6])] * 5
    return images, truths, predictions


@pytest.fixture(scope="module")
def metrics(galaxies):
    _, truths, predictions = galaxies
    return evaluate_detections(truths, predictions)


def test_grid_with_truths_only_draws_solid_boxes(galaxies, tmp_path):
    images, truths, _ = galaxies
    fig = plot_detections_grid(images, truths)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 5 and len(fig.axes) == 6  # 3x2 grid, one empty panel
    for ax, truth in zip(panels, truths):
        rectangles = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert len(rectangles) == len(truth) and all(r.get_linestyle() == "-" for r in rectangles)
        corners_xy = np.reshape([r.get_xy() for r in rectangles], (-1, 2))
        np.testing.assert_allclose(corners_xy, truth.boxes_yxyx[:, [1, 0]].reshape(-1, 2))
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["clump (true)", "odd clump (true)"]
    assert_renders_inside(fig, tmp_path)


def test_grid_with_predictions_draws_dashed_boxes_with_scores_in_class_colours(galaxies, tmp_path):
    images, truths, predictions = galaxies
    fig = plot_detections_grid(images, truths, predictions, min_score=0.1)
    ax = [ax for ax in fig.axes if ax.images][2]
    dashed = [p for p in ax.patches if p.get_linestyle() == "--"]
    assert len(dashed) == 2  # the 0.05 prediction is below min_score
    assert sorted(t.get_text() for t in ax.texts) == ["0.60", "0.90"]
    colours = {tuple(p.get_edgecolor()) for p in dashed}
    assert len(colours) == 2  # one per class
    assert len(fig.legends[0].get_texts()) == 4
    assert_renders_inside(fig, tmp_path)


def test_grid_limits_images_and_checks_inputs(galaxies):
    images, truths, _ = galaxies
    fig = plot_detections_grid(images * 4, truths * 4, max_images=16)
    assert sum(bool(ax.images) for ax in fig.axes) == 16
    with pytest.raises(ValueError, match="need truths for each of the 5 images, got 4"):
        plot_detections_grid(images, truths[:4])
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        plot_detections_grid([np.zeros((8, 8))], [truths[0]])


def test_completeness_purity_plot_draws_the_curves_and_operating_point(metrics, tmp_path):
    fig = plot_completeness_purity(metrics)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["completeness"].get_ydata(), metrics["curves"]["completeness"])
    point = next(line for label, line in lines.items() if label.startswith("operating point"))
    assert point.get_xdata()[0] == metrics["operating_point"]["threshold"]
    assert ax.get_xlabel() and ax.get_ylabel() and "IoU ≥ 0.5" in ax.get_title(loc="left")
    assert_renders_inside(fig, tmp_path)
    # The same metrics re-read from JSON (NaN as null) plot alike.
    reread = json.loads(write_metrics_json(metrics, tmp_path / "m.json").read_text())
    purity = {l.get_label(): l for l in plot_completeness_purity(reread).axes[0].get_lines()}["purity"]
    np.testing.assert_allclose(purity.get_ydata(), lines["purity"].get_ydata())


def test_completeness_by_size_bars(metrics, tmp_path):
    fig = plot_completeness_by_size(metrics)
    ax = fig.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, np.nan_to_num(np.array(metrics["by_size"]["completeness"], float)))
    assert [t.get_text() for t in ax.get_xticklabels()] == metrics["by_size"]["labels"]
    assert_renders_inside(fig, tmp_path)


def test_completeness_by_snr_draws_every_row_of_both_breakdowns(galaxies, tmp_path):
    _, truths, predictions = galaxies
    snr = [np.linspace(2.0, 30.0, len(t)) for t in truths]
    snr[1][:1] = np.nan
    metrics = evaluate_detections(truths, predictions, truth_snr=snr)
    # Re-read from JSON, as a saved metrics.json would be: empty bins are null there.
    reread = json.loads(write_metrics_json(metrics, tmp_path / "m.json").read_text())
    fig = plot_completeness_by_snr(reread)
    for ax, key in zip(fig.axes, ("by_snr", "by_size")):
        breakdown = metrics[key]
        lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
        np.testing.assert_array_equal(lines["all"], np.array(breakdown["completeness"], float))
        for name, row in breakdown["per_class"].items():
            np.testing.assert_array_equal(lines[name.replace("_", " ")], np.array(row["completeness"], float))
        ticks = [f"{label}\nn={n}" for label, n in zip(breakdown["labels"], breakdown["n_true"])]
        assert [t.get_text() for t in ax.get_xticklabels()] == ticks
    assert "1 without SNR" in fig.axes[0].get_title(loc="left")
    assert_renders_inside(fig, tmp_path)
    with pytest.raises(ValueError, match="by_snr"):
        plot_completeness_by_snr(evaluate_detections(truths, predictions))


def test_training_size_curve(tmp_path):
    fig = plot_training_size_curve([1000, 100, 10000], [0.7, 0.5, 0.85], [0.75, 0.6, 0.9])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    completeness = next(line for line in ax.get_lines() if line.get_label() == "completeness")
    assert list(completeness.get_xdata()) == [100, 1000, 10000] and list(completeness.get_ydata()) == [0.5, 0.7, 0.85]
    assert_renders_inside(fig, tmp_path)
    with pytest.raises(ValueError, match="equal"):
        plot_training_size_curve([1, 2], [0.5], [0.5, 0.6])


def test_class_colours_are_distinct():
    assert len(set(CLASS_COLOURS)) == len(CLASS_COLOURS)


def test_training_size_axis_is_labelled_with_the_sizes_trained():
    from gsfc_tf.plots import plot_training_size_curve

    figure = plot_training_size_curve([800, 200, 400], [0.5, 0.2, 0.4], [0.6, 0.3, 0.5])
    axis = figure.axes[0]
    assert [t.get_text() for t in axis.get_xticklabels()] == ["200", "400", "800"]
    np.testing.assert_array_equal(axis.lines[0].get_xdata(), [200, 400, 800])


def test_clump_science_figure(tmp_path):
    # Three galaxies: g0 has a giant clump measured twice (one merged clump: counted once) and a
    # faint one; g1 one at 5 %; g2 none. The truth has a giant clump in g1 too.
    clumps = Table({
        "galaxy_id": ["g0", "g0", "g0", "g1"], "merged_id": [0, 0, 1, 0], "class_id": [0, 0, 1, 0],
        "flux_ratio_u": [0.12, 0.12, 0.001, 0.05], "u_g": [0.4, 0.4, 1.2, 0.6], "distance_re": [0.5, 0.5, 2.0, 1.0],
    })
    truth = Table({"galaxy_id": ["g0", "g0", "g1"], "flux_ratio_u": [0.11, 0.002, 0.09]})
    fig = plot_clump_science(clumps, 3, truth=truth)
    ratio_ax, colour_ax, fraction_ax = fig.axes
    assert [line.get_xdata()[0] for line in ratio_ax.get_lines()] == [0.03, 0.08]
    labels = [text.get_text() for text in ratio_ax.get_legend().get_texts()]
    assert labels[:2] == ["catalogue (3 clumps)", "truth (3 clumps)"]
    catalogue_bars, truth_bars = fraction_ax.containers
    # Above 3 %: g0 and g1 of 3; above 8 %: g0 (catalogue), g0 and g1 (truth).
    assert [bar.get_height() for bar in catalogue_bars] == pytest.approx([2 / 3, 1 / 3])
    assert [bar.get_height() for bar in truth_bars] == pytest.approx([2 / 3, 2 / 3])
    assert sum(len(collection.get_offsets()) for collection in colour_ax.collections) == 3
    assert_renders_inside(fig, tmp_path)
