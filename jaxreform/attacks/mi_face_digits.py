"""The seed's MI-FACE defence experiment on MNIST: invert every digit from a softmax model
trained on clean digits and from one trained on reformed digits.

The deployed reformed model is classifier ∘ encoder, so the attacker (white-box, as in
Fredrikson et al.) inverts through the encoder: it searches over *images*, and its
reconstructions are images either way. Both searches are MI-FACE (:func:`mi_face.mi_face`)
with all ten digits in one jitted call, in two stopping modes: the paper's (α, β, γ) and a
fixed number of steps.

Success is measured by a judge, a small CNN trained on the first half of the MNIST test split,
which neither target saw: its rate of naming the inverted digit and its mean confidence in
it, beside SSIM and MSE to the digit's mean training image. Calibration rows: the class-mean
images (what an ideal reconstruction would look like to the judge), blank and noise images,
and one gradient step from x₀ = 0 (a template, not yet a reconstruction).
:func:`run_mi_face_digits_job` writes ``report.json``, ``report.md`` and
``reconstructions.png`` (mean image, then each target's reconstruction, per digit).
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxreform import _validate, data, models, report, train  # noqa: E402
from jaxreform.attacks import mi_face  # noqa: E402
from jaxreform.errors import ConfigError  # noqa: E402
from jaxreform.attacks.mi_face_eval import person_mean_images, ssim  # noqa: E402
from jaxreform.reformers import make_reformer  # noqa: E402

REFORMERS = ("none", "autoencoder", "influence")
INFLUENCE_BUDGET = 0.3
SCORES = ("identification", "judge confidence", "SSIM to class mean", "MSE to class mean")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DigitsJobConfig:
    """Settings of the MNIST defence experiment.

    Attributes:
        data_dir: Folder holding MNIST (None: ``$JAXREFORM_DATA_DIR`` or the embedded subset).
        reformers: The targets: ``"none"`` (clean), ``"autoencoder"`` (classifier ∘
            encoder, trained on codes) and/or ``"influence"`` (trained on digits moved by
            noise orthogonal to their influence directions, at ``INFLUENCE_BUDGET`` relative
            L2 change and clipped to [0, 1]; deployed on raw images).
        epochs: Epochs of each softmax target (and of the autoencoder).
        max_steps: α of the paper mode, and the step count of the fixed mode.
        judge_epochs: Epochs of the judge CNN.
        seed: Seed of every random choice.
    """

    data_dir: str | None = None
    reformers: tuple[str, ...] = REFORMERS
    epochs: int = 5
    max_steps: int = 5000
    judge_epochs: int = 5
    seed: int = 0

    def __post_init__(self):
        for name in self.reformers:
            _validate.check_choice("reformer for MI-FACE on MNIST", name, REFORMERS)
        if len(set(self.reformers)) != len(self.reformers):
            raise ConfigError(f"each reformer may appear once, got {list(self.reformers)}.")
        _validate.check_integers(epochs=self.epochs, max_steps=self.max_steps,
                                 judge_epochs=self.judge_epochs)
        _validate.check_positive(epochs=self.epochs, max_steps=self.max_steps,
                                 judge_epochs=self.judge_epochs)


def _identity(images):
    return images


def train_target(key, reformer: str, train_set, test_set, epochs: int):
    """Trains softmax regression on clean or reformed digits; returns (deployed
    ``predict(params, images) -> logits``, params, test accuracy)."""
    module = models.SoftmaxRegression(num_classes=10)
    inputs, labels = train_set
    encode = _identity
    settings = {"train_config": train.TrainConfig(epochs=epochs, batch_size=128)}
    if reformer == "influence":
        settings.update(budget=INFLUENCE_BUDGET, clip=(0.0, 1.0))
    if reformer != "none":
        fitted = make_reformer(reformer, **settings).fit(jax.random.fold_in(key, 2), inputs,
                                                         labels, progress=False)
        inputs = fitted.reformed_train
    if reformer == "autoencoder":
        encode = functools.partial(fitted.autoencoder.apply, fitted.encoder_params,
                                   method="encode")
    params = train.fit_classifier(key, module, inputs, labels, settings["train_config"])

    def predict(p, images):
        return module.apply(p, encode(images))

    test_accuracy = train.accuracy(predict, params, *test_set)
    return predict, params, test_accuracy


def score(images, judge, judge_params, labels, means) -> dict[str, float]:
    """The judge's identification rate and confidence, and SSIM / MSE to the class means."""
    images = jnp.asarray(images)
    probabilities = jax.nn.softmax(judge.apply(judge_params, images))
    labels = jnp.asarray(labels)
    return {
        "identification": float(jnp.mean(jnp.argmax(probabilities, 1) == labels)),
        "judge confidence": float(jnp.mean(probabilities[jnp.arange(len(labels)), labels])),
        "SSIM to class mean": float(jnp.mean(jax.vmap(ssim)(images, means[labels]))),
        "MSE to class mean": float(jnp.mean((images - means[labels]) ** 2)),
    }


def run(config: DigitsJobConfig, out: Path) -> dict:
    """Runs the experiment and writes the report into ``out``."""
    start = time.perf_counter()
    key = jax.random.key(config.seed)
    dataset = data.load_mnist(config.data_dir)
    half = len(dataset.test_labels) // 2
    train_set = (jnp.asarray(dataset.train_inputs), jnp.asarray(dataset.train_labels))
    public = (jnp.asarray(dataset.test_inputs[:half]), jnp.asarray(dataset.test_labels[:half]))
    heldout = (jnp.asarray(dataset.test_inputs[half:]), jnp.asarray(dataset.test_labels[half:]))
    judge = models.SmallCNN(num_classes=10)
    judge_params = train.fit_classifier(jax.random.fold_in(key, 1), judge, *public,
                                        train.TrainConfig(epochs=config.judge_epochs,
                                                          batch_size=128))
    labels = np.arange(10)
    means = jnp.asarray(person_mean_images(dataset.train_inputs, dataset.train_labels, 10))
    shape = tuple(dataset.train_inputs.shape[1:])
    calibration = {
        "class-mean images": means,
        "blank image": jnp.zeros((10, *shape)),
        "uniform noise": jax.random.uniform(jax.random.fold_in(key, 2), (10, *shape)),
    }
    rows = {name: score(images, judge, judge_params, labels, means)
            for name, images in calibration.items()}
    modes = {"paper (α, β, γ)": mi_face.MIFaceConfig(max_steps=config.max_steps),
             f"fixed {config.max_steps} steps": mi_face.MIFaceConfig.fixed_steps(
                 config.max_steps),
             "one gradient step": mi_face.MIFaceConfig.fixed_steps(1)}
    targets, reconstructions = {}, {}
    for index, reformer in enumerate(config.reformers):
        predict, params, accuracy = train_target(jax.random.fold_in(key, 10 + index), reformer,
                                                 train_set, heldout, config.epochs)
        targets[reformer] = {"test_accuracy": accuracy, "modes": {}}
        for mode, search in modes.items():
            result = mi_face.mi_face(predict, params, labels, image_shape=shape, config=search,
                                     outputs="logits")
            targets[reformer]["modes"][mode] = {
                **score(result.images, judge, judge_params, labels, means),
                "mean steps": float(np.mean(np.asarray(result.steps))),
                "seconds": result.seconds}
            if mode.startswith("fixed"):
                reconstructions[f"{reformer}: fixed steps"] = np.asarray(result.images)
    save_figure(np.asarray(means), reconstructions, out / "reconstructions.png")
    payload = {
        "jaxreform_report": 1, "command": "attack mi-face --dataset mnist",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "config": dataclasses.asdict(config),
        "data": {"source": dataset.source, "num_train": int(len(dataset.train_labels)),
                 "judge_train": half, "heldout": int(len(heldout[1]))},
        "versions": report.package_versions(),
        "judge_accuracy": train.accuracy(judge.apply, judge_params, *heldout),
        "calibration": rows, "targets": targets, "seconds": time.perf_counter() - start,
        "files": ["report.json", "report.md", "reconstructions.png"],
    }
    report.write_json(out / report.REPORT_JSON, payload)
    (out / report.REPORT_MD).write_text(render_markdown(payload), encoding="utf-8")
    return payload


def save_figure(means, reconstructions: dict[str, np.ndarray], path: Path) -> None:
    """One column per digit: its mean training image, then each target's reconstruction."""
    names = ["class mean", *reconstructions]
    figure, axes = plt.subplots(len(names), 10, figsize=(11, 1.25 * len(names) + 0.3),
                                squeeze=False)
    for row, name in enumerate(names):
        images = means if row == 0 else reconstructions[name]
        for digit in range(10):
            axis = axes[row, digit]
            axis.imshow(images[digit, ..., 0], cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(str(digit), fontsize=9)
        axes[row, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def render_markdown(payload: dict) -> str:
    """``report.md``: calibration, then each target and stopping mode."""
    table_rows = [["calibration", name, *(scores[k] for k in SCORES), "", ""]
                  for name, scores in payload["calibration"].items()]
    for reformer, target in payload["targets"].items():
        for mode, scores in target["modes"].items():
            table_rows.append([f"{reformer} (test accuracy {target['test_accuracy']:.4f})", mode,
                               *(scores[k] for k in SCORES), scores["mean steps"],
                               scores["seconds"]])
    source = f"Data: {payload['data']['source']}, {payload['data']['num_train']} training digits"
    if payload["data"]["source"] == data.EMBEDDED_SOURCE:
        source += " (**a small subset**: pass `--data-dir` for the full data)"
    return "\n".join([
        "# jaxreform attack mi-face: MNIST, clean and reformed softmax targets", "",
        source + ".", "",
        f"Judge (small CNN on {payload['data']['judge_train']} test-split digits no target "
        f"saw) accuracy on the other {payload['data']['heldout']}: "
        f"{payload['judge_accuracy']:.4f}. Identification is over the 10 digits (chance "
        f"0.1). {payload['seconds']:.0f} s.", "",
        report.markdown_table(["target", "row", *SCORES, "mean steps", "seconds"], table_rows),
        "", "![reconstructions](reconstructions.png)", ""])


def run_mi_face_digits_job(config: DigitsJobConfig, out_dir, *,
                           overwrite: bool = False) -> dict:
    """:func:`run` inside an atomic report folder (see :mod:`jaxreform.report`)."""
    with report.report_folder(out_dir, overwrite=overwrite) as staging:
        return run(config, staging)
