"""Figures for evaluation results and galaxies with their clumps.

matplotlib only, through `matplotlib.figure.Figure` rather than pyplot: no GUI backend, no global
figure registry to leak, safe under Agg. Every function returns the `Figure`; notebooks show it,
scripts call `fig.savefig(path)`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from gsfc_tf import conventions
from gsfc_tf.evaluation import ImageBoxes

__all__ = [
    "CLASS_COLOURS",
    "plot_clump_science",
    "plot_completeness_by_size",
    "plot_completeness_by_snr",
    "plot_completeness_purity",
    "plot_detections_grid",
    "plot_selection_function",
    "plot_training_size_curve",
]

# Bright colours that stay visible on dark sky and on yellow or blue galaxy light.
CLASS_COLOURS = ("#00ff7f", "#ff40ff", "#ffd700", "#00bfff")
_COMPLETENESS_COLOUR, _PURITY_COLOUR = "tab:blue", "tab:orange"


def _target_line(ax, target: float) -> None:
    ax.axhline(target, color="0.5", linestyle=":", linewidth=1, label=f"target {target:g}")


def _floats(values: Sequence[float | None]) -> np.ndarray:
    """JSON nulls back to NaN, so re-read metrics plot the same as fresh ones."""
    return np.array([math.nan if v is None else v for v in values], float)


def plot_completeness_purity(metrics: Mapping[str, Any], *, per_class: bool = True) -> Figure:
    """Completeness and purity against the score threshold, with the operating point.

    Where `metrics` has `by_centre` (a `metrics_report`), the centre-match curves are drawn
    faint beside the main rule's.

    Args:
        metrics: an `evaluate_detections` / `metrics_report` result (or its JSON, re-read).
        per_class: also draw each class's curves, thinner.

    Returns:
        The figure.
    """
    curves = metrics["curves"]
    thresholds = np.asarray(curves["score_threshold"], float)
    fig = Figure(figsize=(7.6, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(thresholds, _floats(curves["completeness"]), color=_COMPLETENESS_COLOUR, lw=2, label="completeness")
    ax.plot(thresholds, _made_purity(curves), color=_PURITY_COLOUR, lw=2, label="purity")
    if "by_centre" in metrics:  # the same detections, matched by centre alone
        centre = metrics["by_centre"]
        ax.plot(thresholds, _floats(centre["curves"]["completeness"]), color=_COMPLETENESS_COLOUR, lw=2, alpha=0.4)
        ax.plot(thresholds, _made_purity(centre["curves"]), color=_PURITY_COLOUR, lw=2, alpha=0.4)
        ax.plot([], [], color="0.3", lw=2, alpha=0.4,
                label=f"centres ≤ {centre['criterion']['centre_distance']:g} px")
    if per_class:
        for name, style in zip(metrics["per_class"], ("--", ":", "-.")):
            class_curves = metrics["per_class"][name]["curves"]
            ax.plot(thresholds, _floats(class_curves["completeness"]), color=_COMPLETENESS_COLOUR, lw=1, ls=style)
            ax.plot(thresholds, _made_purity(class_curves), color=_PURITY_COLOUR, lw=1, ls=style)
            ax.plot([], [], color="0.3", lw=1, ls=style, label=name.replace("_", " "))
    operating = metrics["operating_point"]
    _target_line(ax, operating["target"])
    if operating["threshold"] is not None:
        ax.axvline(operating["threshold"], color="0.2", lw=1, ls="--")
        ax.plot(
            [operating["threshold"]] * 2, [operating["completeness"], operating["purity"]], "o", color="0.2",
            label=f"operating point: score ≥ {operating['threshold']:.2f}\n"
            f"completeness {operating['completeness']:.3f}, purity {operating['purity']:.3f}",
        )
    criterion = metrics["criterion"]
    parts = [f"IoU ≥ {criterion['iou_threshold']:g}"] if criterion["iou_threshold"] is not None else []
    parts += [f"centre ≤ {criterion['centre_distance']:g} px"] if criterion["centre_distance"] is not None else []
    ax.set(xlabel="score threshold", ylabel="fraction", xlim=(thresholds[0], thresholds[-1]), ylim=(0, 1.02))
    ax.set_title(f"Completeness and purity ({' or '.join(parts)}; {metrics['n_true']} true clumps)", fontsize=10,
                 loc="left")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=8)
    return fig


def _made_purity(curves: Mapping[str, Sequence]) -> np.ndarray:
    """Purity where predictions were made; the 1.0 convention beyond the last score is not drawn."""
    return np.where(np.asarray(curves["n_predicted"]) > 0, _floats(curves["purity"]), np.nan)


def plot_completeness_by_size(metrics: Mapping[str, Any]) -> Figure:
    """Class-agnostic completeness per bin of true box side, at the operating threshold.

    Args:
        metrics: an `evaluate_detections` / `metrics_report` result.

    Returns:
        The figure: one bar per size bin, labelled with its number of true clumps.
    """
    by_size = metrics["by_size"]
    completeness = _floats(by_size["completeness"])
    positions = np.arange(len(completeness))
    fig = Figure(figsize=(6.0, 3.8), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar(positions, np.nan_to_num(completeness), color=_COMPLETENESS_COLOUR, width=0.7)
    ax.bar_label(bars, labels=[f"n={n}" for n in by_size["n_true"]], fontsize=8, padding=2)
    _target_line(ax, metrics["operating_point"]["target"])
    ax.set_xticks(positions, by_size["labels"])
    threshold = by_size["threshold"]
    ax.set(xlabel="true box side (px)", ylabel="completeness", ylim=(0, 1.12))
    ax.set_title(
        "Completeness by clump size" + ("" if threshold is None else f" (score ≥ {threshold:.2f})"), fontsize=10
    )
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _plot_breakdown(ax, breakdown: Mapping[str, Any], xlabel: str, target: float) -> None:
    """Completeness per bin: all truths (thick) and each true class; bin counts under the ticks."""
    positions = np.arange(len(breakdown["labels"]))
    ax.plot(positions, _floats(breakdown["completeness"]), "o-", color=_COMPLETENESS_COLOUR, lw=2, label="all")
    for (name, row), colour, marker in zip(breakdown["per_class"].items(), CLASS_COLOURS, "s^v"):
        ax.plot(positions, _floats(row["completeness"]), marker + "--", color=colour, lw=1,
                markeredgecolor="0.3", label=name.replace("_", " "))
    _target_line(ax, target)
    ax.set_xticks(positions, [f"{label}\nn={n}" for label, n in zip(breakdown["labels"], breakdown["n_true"])])
    ax.set(xlabel=xlabel, ylabel="completeness", ylim=(0, 1.05))
    ax.grid(alpha=0.3)


def plot_completeness_by_snr(metrics: Mapping[str, Any]) -> Figure:
    """Where the misses are: completeness by clump SNR and by box side, overall and per class.

    Args:
        metrics: an `evaluate_detections` / `metrics_report` result with `by_snr` (truths that
            carry an SNR, as synthetic clumps do).

    Returns:
        The figure: SNR on the left, box side on the right; one line for all clumps and one
        per true class, at the operating threshold.
    """
    if "by_snr" not in metrics:
        raise ValueError("metrics have no by_snr: evaluate with truth_snr (synthetic clumps carry it)")
    by_snr, by_size = metrics["by_snr"], metrics["by_size"]
    fig = Figure(figsize=(10.0, 3.8), layout="constrained")
    snr_ax, size_ax = fig.subplots(1, 2, sharey=True)
    target = metrics["operating_point"]["target"]
    _plot_breakdown(snr_ax, by_snr, "clump signal-to-noise ratio (r band, in its box)", target)
    _plot_breakdown(size_ax, by_size, "true box side (px)", target)
    unknown = f"; {by_snr['n_unknown']} without SNR" if by_snr["n_unknown"] else ""
    snr_ax.set_title(f"Completeness by clump SNR{unknown}", fontsize=10, loc="left")
    size_ax.set_title("... and by clump size", fontsize=10, loc="left")
    threshold = by_snr["threshold"]
    handles, labels = snr_ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8,
               title=None if threshold is None else f"score ≥ {threshold:.2f}", title_fontsize=8)
    return fig


def plot_training_size_curve(
    sizes: Sequence[int],
    completeness: Sequence[float],
    purity: Sequence[float],
    *,
    target: float = conventions.OPERATING_TARGET,
) -> Figure:
    """Completeness and purity against the number of training galaxies.

    Args:
        sizes: [S] training-set sizes (galaxies).
        completeness: [S] completeness at each size.
        purity: [S] purity at each size.
        target: the line both should reach.

    Returns:
        The figure, with a logarithmic size axis.
    """
    sizes, completeness, purity = (np.asarray(v, float) for v in (sizes, completeness, purity))
    if not (sizes.ndim == 1 and sizes.shape == completeness.shape == purity.shape):
        raise ValueError(f"need three equal [S] arrays, got {sizes.shape}, {completeness.shape}, {purity.shape}")
    order = np.argsort(sizes)
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(sizes[order], completeness[order], "o-", color=_COMPLETENESS_COLOUR, label="completeness")
    ax.plot(sizes[order], purity[order], "s-", color=_PURITY_COLOUR, label="purity")
    _target_line(ax, target)
    ax.set_xscale("log")
    # Label the sizes trained, not powers of ten (a few sizes often span less than a decade).
    ax.set_xticks(sizes[order], [f"{size:g}" for size in sizes[order]])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set(xlabel="training galaxies", ylabel="fraction", ylim=(0, 1.02))
    ax.set_title("Completeness and purity against training-set size", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    return fig


def _clumpy_fraction(galaxy_ids, ratios, threshold: float, n_galaxies: int) -> float:
    """The share of `n_galaxies` with at least one clump whose ratio is above `threshold`."""
    return len(set(np.asarray(galaxy_ids)[np.asarray(ratios) > threshold])) / n_galaxies


def plot_clump_science(
    clumps, n_galaxies: int, *, truth=None, flag_band: str = "u", colour: str = "u_g"
) -> Figure:
    """The clump-science figure: flux ratios with the giant-clump lines, colour against distance, clumpy fraction.

    Left: the clump/host flux ratio in `flag_band` with the 3 % and 8 % lines
    (`photometry.FLUX_RATIO_FLAGS`; above 8 % of the host's UV light is a giant clump, Adams et
    al. 2022). Middle: `colour` against galactocentric distance in host half-light radii, per
    class. Right: the clumpy fraction, the share of galaxies with at least one clump above each
    line. Catalogue rows measured as one merged clump (`merged_id`) count once; rows without
    photometry are left out; ratios at or below 1e-4 (faint clumps' negative fluxes too) fall in
    the first bin.

    Args:
        clumps: a clump catalogue (`catalogue.write_catalogue`'s table read back, or any table with
            galaxy_id, merged_id, class_id, distance_re, `colour` and flux_ratio_<flag_band>).
        n_galaxies: galaxies catalogued, those without clumps included.
        truth: optionally the synthetic truth table (`synthetic_fits.TRUTH_TABLE_NAME`, same
            galaxies): its ratios and clumpy fraction are drawn beside the catalogue's.
        flag_band: the band of the ratios.
        colour: the colour column on the y axis.

    Returns:
        The figure.
    """
    # Deferred: photometry imports photutils, which no other figure needs.
    from gsfc_tf.photometry import FLUX_RATIO_FLAGS

    if n_galaxies < 1:
        raise ValueError(f"n_galaxies must be >= 1, got {n_galaxies}")
    ratio_column = f"flux_ratio_{flag_band}"
    ratios = np.asarray(clumps[ratio_column], float)
    merged_clumps = np.char.add(np.asarray(clumps["galaxy_id"]).astype(str), "/")
    merged_clumps = np.char.add(merged_clumps, np.asarray(clumps["merged_id"]).astype(str))
    first = np.zeros(len(ratios), bool)
    first[np.unique(merged_clumps, return_index=True)[1]] = True
    measured = first & np.isfinite(ratios)
    clumps = clumps[measured]
    ratios = ratios[measured]
    samples = {"catalogue": (np.asarray(clumps["galaxy_id"]), ratios)}
    if truth is not None:
        samples["truth"] = (np.asarray(truth["galaxy_id"]), np.asarray(truth[ratio_column], float))

    fig = Figure(figsize=(13.0, 3.8), layout="constrained")
    ratio_ax, colour_ax, fraction_ax = fig.subplots(1, 3, width_ratios=(1.2, 1.2, 0.8))
    bins = np.logspace(-4, 0, 33)
    for (name, (_, values)), style in zip(samples.items(), ("-", "--")):
        ratio_ax.hist(np.clip(values, bins[0], bins[-1]), bins=bins, histtype="step", linestyle=style,
                      label=f"{name} ({len(values)} clumps)")
    for threshold, line in zip(FLUX_RATIO_FLAGS, (":", "-")):
        ratio_ax.axvline(threshold, color="0.3", linestyle=line, linewidth=1, label=f"{threshold:.0%}")
    ratio_ax.set_xscale("log")
    ratio_ax.set(xlabel=f"clump / host flux, {flag_band} band", ylabel="clumps")
    ratio_ax.set_title("Flux ratios: giant clumps lie above 8 %", fontsize=10)
    ratio_ax.legend(fontsize=8)

    for class_id, name in enumerate(conventions.CLASS_NAMES):
        mine = np.asarray(clumps["class_id"]) == class_id
        colour_ax.scatter(np.asarray(clumps["distance_re"], float)[mine], np.asarray(clumps[colour], float)[mine],
                          s=10, alpha=0.7, color=(_COMPLETENESS_COLOUR, _PURITY_COLOUR)[class_id % 2], label=name)
    colour_ax.set(xlabel="distance from the host's centre (half-light radii)", ylabel=colour.replace("_", " - "))
    colour_ax.set_title("Colour against galactocentric distance", fontsize=10)
    colour_ax.legend(fontsize=8)
    colour_ax.grid(alpha=0.3)

    positions = np.arange(len(FLUX_RATIO_FLAGS))
    width = 0.8 / len(samples)
    for k, (name, (galaxy_ids, values)) in enumerate(samples.items()):
        fractions = [_clumpy_fraction(galaxy_ids, values, threshold, n_galaxies) for threshold in FLUX_RATIO_FLAGS]
        bars = fraction_ax.bar(positions + (k - (len(samples) - 1) / 2) * width, fractions, width, label=name)
        fraction_ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    fraction_ax.set_xticks(positions, [f"a clump > {threshold:.0%}" for threshold in FLUX_RATIO_FLAGS])
    fraction_ax.set(ylabel=f"fraction of the {n_galaxies} galaxies", ylim=(0, 1.1))
    fraction_ax.set_title("Clumpy fraction", fontsize=10)
    fraction_ax.legend(fontsize=8)
    return fig


def _draw_boxes(ax, boxes: ImageBoxes, colours: Sequence[str], *, dashed: bool) -> None:
    for k, (x_min, y_min, width, height) in enumerate(conventions.yxyx_to_xywh(boxes.boxes_yxyx)):
        colour = colours[int(boxes.labels[k]) % len(colours)]
        ax.add_patch(
            Rectangle((x_min, y_min), width, height, fill=False, edgecolor=colour,
                      linewidth=1.0 if dashed else 1.4, linestyle="--" if dashed else "-")
        )
        if boxes.scores is not None:
            # Above the box, or inside it where the box touches the top edge.
            above = y_min >= 8
            ax.text(x_min, y_min - 1 if above else y_min + 1, f"{boxes.scores[k]:.2f}", color=colour, fontsize=6,
                    va="bottom" if above else "top", ha="left", clip_on=True)


def _draw_panel(
    ax, index: int, image, truth: ImageBoxes | None, prediction: ImageBoxes | None, *, title: str | None, min_score: float
) -> None:
    """One panel of `plot_detections_grid`: image `index` with its boxes and a title."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"images must be [H, W, 3], image {index} has shape {image.shape}")
    ax.imshow(image, interpolation="nearest")
    counts = []
    if truth is not None:
        _draw_boxes(ax, truth, CLASS_COLOURS, dashed=False)
        counts.append(f"{len(truth)} true")
    if prediction is not None:
        shown = prediction.select(prediction.scores >= min_score)
        _draw_boxes(ax, shown, CLASS_COLOURS, dashed=True)
        counts.append(f"{len(shown)} predicted")
    ax.set_title(title if title is not None else f"#{index}: " + ", ".join(counts), fontsize=8)


def plot_detections_grid(
    images: Sequence[np.ndarray],
    truths: Sequence[ImageBoxes] | None,
    predictions: Sequence[ImageBoxes] | None = None,
    *,
    class_names: Sequence[str] = conventions.CLASS_NAMES,
    max_images: int = 16,
    titles: Sequence[str] | None = None,
    min_score: float = 0.0,
) -> Figure:
    """Galaxies with true boxes (solid) and predicted boxes (dashed, with scores), by class colour.

    Args:
        images: I images [H, W, 3], uint8 or float in [0, 1].
        truths: I `ImageBoxes`, or None to draw predictions only.
        predictions: I `ImageBoxes` with scores, or None to draw truths only.
        class_names: name of class id i is `class_names[i]`; colours follow `CLASS_COLOURS`.
        max_images: draw at most this many (the first ones).
        titles: I panel titles; default: the image index and box counts.
        min_score: draw only predictions scoring at least this.

    Returns:
        The figure: a near-square grid of panels with one shared legend.
    """
    n = min(len(images), max_images)
    for what, boxes in (("truths", truths), ("predictions", predictions), ("titles", titles)):
        if boxes is not None and len(boxes) != len(images):
            raise ValueError(f"need {what} for each of the {len(images)} images, got {len(boxes)}")
    if n == 0:
        raise ValueError("no images to draw")
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(2.3 * columns, 2.3 * rows + 0.45), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i < n:
            _draw_panel(
                ax, i, images[i], None if truths is None else truths[i], None if predictions is None else predictions[i],
                title=None if titles is None else titles[i], min_score=min_score,
            )
    handles = [
        Line2D([], [], color=CLASS_COLOURS[c % len(CLASS_COLOURS)], ls=ls, label=f"{name.replace('_', ' ')} ({kind})")
        for c, name in enumerate(class_names)
        for kind, ls, shown in (("true", "-", truths), ("predicted", "--", predictions))
        if shown is not None
    ]
    legend = fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=8,
                        facecolor="0.15", labelcolor="white", edgecolor="0.15")
    legend.get_frame().set_alpha(1.0)
    return fig


# Line styles of the selection function's match rules, in `completeness.MATCH_RULES` order: the
# paper's IoU solid, the centre match faint.
_RULE_STYLES = (("o-", 1.0), ("s-", 0.45))


def _plot_rules(ax, positions, breakdown: Mapping[str, Any], rules: Mapping[str, str]) -> None:
    for (rule, label), (style, alpha) in zip(rules.items(), _RULE_STYLES):
        ax.plot(positions, _floats(breakdown[f"completeness_{rule}"]), style, color=_COMPLETENESS_COLOUR,
                alpha=alpha, lw=2, label=label)
    ax.set(ylabel="recovered fraction", ylim=(0, 1.05))
    ax.grid(alpha=0.3)


def plot_selection_function(summary: Mapping[str, Any]) -> Figure:
    """Recovered fraction of injected clumps against flux ratio, SNR, galactocentric distance and host axis ratio.

    Args:
        summary: `completeness.CompletenessResult.summary` (or `completeness.json`, re-read).

    Returns:
        The figure: four panels, both match rules in each; the flux-ratio panel marks the
        catalogue's flux-ratio flags (dotted) and the ratios of 50 % and 80 % completeness (x).
    """
    rules = summary["match_rules"]
    fig = Figure(figsize=(10.0, 7.0), layout="constrained")
    (ratio_ax, snr_ax), (distance_ax, axis_ax) = fig.subplots(2, 2)
    by_ratio = summary["by_flux_ratio"]
    ratios = np.asarray(by_ratio["flux_ratio"], float)
    _plot_rules(ratio_ax, ratios, by_ratio, rules)
    ratio_ax.set_xscale("log")
    ratio_ax.set_xticks(ratios, [f"{100 * r:.2g}" for r in ratios])
    ratio_ax.xaxis.set_minor_locator(NullLocator())
    for flag in summary["flux_ratio_flags"]:
        ratio_ax.axvline(flag, color="0.5", ls=":", lw=1)
    for rule, (_, alpha) in zip(rules, _RULE_STYLES):
        for point in summary["flux_ratio_at"][rule]:
            if point["how"] == "interpolated":
                ratio_ax.plot(point["flux_ratio"], point["level"], "x", color="k", alpha=alpha, ms=8)
    band = summary["settings"]["flag_band"] or "bluest"
    ratio_ax.set(xlabel=f"clump/host flux ratio, {band} band (%)")
    ratio_ax.legend(loc="lower right", fontsize=8)
    ratio_ax.set_title(f"{summary['n_injected']} clumps injected into {summary['n_galaxies_injected']} galaxies "
                       f"(score ≥ {summary['min_score']:.2f})", fontsize=10, loc="left")
    panels = ((snr_ax, "by_snr", f"clump SNR ({summary['settings']['snr_band']} band, in its aperture)"),
              (distance_ax, "by_distance_re", "distance from the host's centre (half-light radii)"),
              (axis_ax, "by_host_axis_ratio", "host axis ratio"))
    for ax, key, xlabel in panels:
        breakdown = summary[key]
        positions = np.arange(len(breakdown["labels"]))
        _plot_rules(ax, positions, breakdown, rules)
        ax.set_xticks(positions, [f"{label}\nn={n}" for label, n in zip(breakdown["labels"], breakdown["n"])], fontsize=8)
        ax.set(xlabel=xlabel)
    return fig
