"""Pictures for reports (matplotlib, Agg backend: no display needed).

Each function draws one figure and saves it to ``path`` as PNG; none keeps global state.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _as_image(example: np.ndarray) -> np.ndarray:
    example = np.asarray(example)
    if example.ndim == 3 and example.shape[-1] == 1:
        return example[..., 0]
    return example


def reformed_grid(
    original, reformed, path: str | os.PathLike, *, labels=None, num_examples: int = 8
) -> None:
    """Saves a grid: one column per example; rows original, reformed and |difference|.

    Args:
        original: ``[n, H, W]`` or ``[n, H, W, C]`` images in [0, 1].
        reformed: The same examples after reformation, same shape.
        path: Where to write the PNG.
        labels: Optional ``[n]`` labels shown above each column.
        num_examples: How many of the first examples to show.
    """
    count = min(num_examples, len(original))
    rows = (("original", original, "gray"), ("reformed", reformed, "gray"),
            ("|difference|", np.abs(np.asarray(reformed) - np.asarray(original)), "magma"))
    figure, axes = plt.subplots(3, count, figsize=(1.4 * count, 4.6), squeeze=False)
    for row, (title, images, colormap) in enumerate(rows):
        for column in range(count):
            axis = axes[row, column]
            axis.imshow(_as_image(images[column]), cmap=colormap, vmin=0.0, vmax=1.0)
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(title)
            if row == 0 and labels is not None:
                axis.set_title(f"label {int(labels[column])}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def roc_loglog(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: str | os.PathLike, *,
               title: str = "loss-threshold membership inference") -> None:
    """Saves membership-attack ROC curves on log-log axes (the view of Carlini et al. 2022).

    Args:
        curves: ``{name: (fpr [p], tpr [p])}``.
        path: Where to write the PNG.
        title: Figure title.
    """
    figure, axis = plt.subplots(figsize=(4.8, 4.4))
    floor = 1e-4
    for name, (fpr, tpr) in curves.items():
        axis.plot(np.maximum(fpr, floor), np.maximum(tpr, floor), label=name)
    axis.plot([floor, 1], [floor, 1], "k:", linewidth=0.8, label="chance")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.set_xlim(floor, 1)
    axis.set_ylim(floor, 1)
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title(title)
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def training_curves(histories: dict[str, dict[str, list[float]]], path: str | os.PathLike):
    """Saves the per-epoch training loss (left) and test accuracy (right) of several runs.

    Args:
        histories: ``{run name: {"train_loss": [...], "test_accuracy": [...]}}``.
        path: Where to write the PNG.
    """
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(8.5, 3.4))
    for name, history in histories.items():
        epochs = np.arange(1, len(history["train_loss"]) + 1)
        loss_axis.plot(epochs, history["train_loss"], marker=".", label=name)
        if "test_accuracy" in history:
            accuracy_axis.plot(epochs, history["test_accuracy"], marker=".", label=name)
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("training loss")
    accuracy_axis.set_xlabel("epoch")
    accuracy_axis.set_ylabel("test accuracy")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def grouped_bars(values: dict[str, dict[str, float]], path: str | os.PathLike, *,
                 ylabel: str, title: str) -> None:
    """Saves a grouped bar chart: one group per outer key, one bar per inner key.

    Args:
        values: ``{group: {bar: value}}``, every group with the same bars.
        path: Where to write the PNG.
        ylabel: Label of the value axis.
        title: Figure title.
    """
    groups = list(values)
    bars = list(values[groups[0]])
    width = 0.8 / len(bars)
    figure, axis = plt.subplots(figsize=(1.6 + 1.4 * len(groups), 3.6))
    for index, bar in enumerate(bars):
        positions = np.arange(len(groups)) + (index - (len(bars) - 1) / 2) * width
        axis.bar(positions, [values[g][bar] for g in groups], width, label=bar)
    axis.set_xticks(np.arange(len(groups)), groups)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=len(bars))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def image_grid(images, path: str | os.PathLike, *, title: str, columns: int = 8) -> None:
    """Saves ``images [n, H, W]`` or ``[n, H, W, C]`` (values in [0, 1]) as one grid."""
    images = np.asarray(images)
    rows = int(np.ceil(len(images) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.1 * columns, 1.1 * rows + 0.4),
                                squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if index < len(images):
            axis.imshow(_as_image(images[index]), cmap="gray", vmin=0.0, vmax=1.0)
        else:
            axis.set_axis_off()
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


ROUND_PANELS = (("victim_rate", "judge: victim-class rate"),
                ("nearest_ssim", "SSIM to nearest victim image"),
                ("shared_accuracy", "shared-model accuracy"))


def attack_rounds(histories: dict[str, list[dict]], path: str | os.PathLike) -> None:
    """Saves one panel per measure of :data:`ROUND_PANELS` against the round, one line per
    run (``{run name: [{"round": r, measure: value, ...}, ...]}``)."""
    figure, axes = plt.subplots(1, len(ROUND_PANELS), figsize=(4.2 * len(ROUND_PANELS), 3.4))
    for axis, (measure, label) in zip(axes, ROUND_PANELS):
        for name, rows in histories.items():
            axis.plot([row["round"] for row in rows], [row[measure] for row in rows],
                      marker="o", markersize=3, label=name)
        axis.set_xlabel("round")
        axis.set_title(label, fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, title="defence", title_fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def lines(series: dict[str, list[float]], x: list[float], path: str | os.PathLike, *,
          xlabel: str, ylabel: str, title: str) -> None:
    """Saves one line per entry of ``series`` (``{name: values at x}``) against ``x``."""
    figure, axis = plt.subplots(figsize=(6.0, 3.8))
    for name, values in series.items():
        axis.plot(x, values, marker="o", markersize=4, label=name)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
