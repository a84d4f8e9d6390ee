"""The MI-FACE job behind ``jaxreform attack mi-face``: AT&T faces, every label, three stopping
modes, scored by an evaluator that never saw the targets' training images.

Trains each target on 7 images per person, inverts all 40 people in one jitted call per
stopping mode (the paper's alpha/beta/gamma, a confidence target, a fixed number of steps),
scores the reconstructions with an eigenface evaluator fitted on the 3 held-out images per
person, and reports them beside calibration rows. :func:`run_mi_face_job` writes
``report.json``, ``report.md`` and ``reconstructions.png`` (each person's mean training
image beside each target's reconstruction) into a report folder.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxreform import _validate, report  # noqa: E402
from jaxreform.attacks import mi_face, mi_face_eval, mi_face_targets  # noqa: E402
from jaxreform.data.att_faces import load_att_faces  # noqa: E402

# Fredrikson et al. 2015, Table 4 (8-core Xeon): seconds and steps per reconstruction.
PAPER_TIMES = {"softmax": "1.4 s, 5.6 steps", "mlp": "1298.7 s, 3096.3 steps",
               "dae": "692.5 s"}
HEADER = ["target", "row", "identification", "lineup", "SSIM", "MSE",
          "identification (auto-contrast)", "lineup (auto-contrast)", "SSIM (auto-contrast)",
          "mean steps", "time (s)", "compile (s)"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """Settings of one run (all from the command line)."""

    data_dir: str | None = None
    targets: tuple[str, ...] = ("softmax", "mlp")
    max_steps: int = 5000
    target_confidence: float = 0.99
    num_lineups: int = 200
    num_components: int = 40
    seed: int = 0

    def __post_init__(self):
        for kind in self.targets:
            _validate.check_choice("MI-FACE target", kind, mi_face_targets.TARGET_KINDS)
        _validate.check_integers(max_steps=self.max_steps, num_lineups=self.num_lineups,
                                 num_components=self.num_components)
        _validate.check_positive(max_steps=self.max_steps, num_lineups=self.num_lineups,
                                 num_components=self.num_components)
        _validate.check_fraction(target_confidence=self.target_confidence)


def attack_modes(config: ExperimentConfig) -> dict[str, mi_face.MIFaceConfig]:
    """The three stopping modes, by row name."""
    return {
        "paper (alpha, beta, gamma=0.99)": mi_face.MIFaceConfig(max_steps=config.max_steps),
        f"confidence >= {config.target_confidence}": mi_face.MIFaceConfig.confidence_target(
            config.target_confidence, max_steps=config.max_steps),
        f"fixed {config.max_steps} steps": mi_face.MIFaceConfig.fixed_steps(config.max_steps),
    }


def _row(target: str, name: str, scores, steps=None, seconds=None, compile_seconds=None):
    raw, matched = scores
    return {"target": target, "row": name, **raw.summary(),
            "auto_contrast": matched.summary(),
            "mean_steps": None if steps is None else float(np.mean(steps)),
            "seconds": seconds, "compile_seconds": compile_seconds}


def run_target(kind, dataset, evaluator, config, key, score):
    """Trains one target and scores every stopping mode plus the one-step calibration row."""
    train_key, _ = jax.random.split(key)
    target = mi_face_targets.train_target(kind, dataset, key=train_key)
    print(f"{kind}: train error {target.train_error:.4f}, test error {target.test_error:.4f} "
          f"({target.seconds:.1f} s training)", flush=True)
    labels = np.arange(dataset.num_classes)
    paper_space = target.search_space()

    def invert(mode, space):
        result = mi_face.mi_face(space.predict_fn, target.params, labels,
                                 image_shape=space.shape, config=mode, outputs="logits",
                                 process_with_params=space.process_with_params)
        return result, space.to_images(target.params, result.images)

    rows, images = [], {}
    one_step, one_step_images = invert(mi_face.MIFaceConfig.fixed_steps(1), paper_space)
    rows.append(_row(kind, "calibration: single gradient step", score(one_step_images),
                     one_step.steps, one_step.seconds, one_step.compile_seconds))
    searches = [(name, mode, paper_space) for name, mode in attack_modes(config).items()]
    if kind == "dae":  # the control: the same search with Process reduced to clipping
        searches.append((f"fixed {config.max_steps} steps, Process = clip only",
                         mi_face.MIFaceConfig.fixed_steps(config.max_steps),
                         target.search_space("clip")))
    for name, mode, space in searches:
        result, images[name] = invert(mode, space)
        rows.append(_row(kind, name, score(images[name]), result.steps, result.seconds,
                         result.compile_seconds))
        print(f"  {name}: {result.seconds:.1f} s, mean steps {result.steps.mean():.1f}; "
              f"identification {rows[-1]['identification_rate']:.1%}, lineup "
              f"{rows[-1]['lineup_accuracy']:.1%}", flush=True)
    summary = {"train_error": target.train_error, "test_error": target.test_error,
               "train_seconds": target.seconds, "search_space": list(paper_space.shape),
               **target.extra}
    return summary, rows, images


def save_figure(means, reconstructions: dict[str, np.ndarray], path: Path, people=range(10)):
    """One column per person: the mean training image, then each row's reconstruction."""
    people = list(people)
    names = ["person's mean training image", *reconstructions]
    fig, axes = plt.subplots(len(names), len(people),
                             figsize=(1.1 * len(people), 1.45 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        stack = means if r == 0 else reconstructions[name]
        for c, person in enumerate(people):
            axes[r, c].imshow(stack[person, ..., 0], cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(f"s{person + 1}", fontsize=8)
        axes[r, 0].set_ylabel(name, fontsize=6, rotation=0, ha="right", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(config: ExperimentConfig, out: Path) -> dict:
    """Runs the experiment, writing the report into ``out``; returns the JSON payload."""
    eval_key, noise_key, lineup_key, *target_keys = jax.random.split(
        jax.random.key(config.seed), 3 + len(config.targets))
    dataset = load_att_faces(config.data_dir, seed=config.seed)
    evaluator = mi_face_eval.fit_face_evaluator(
        dataset.test_inputs, dataset.test_labels, num_classes=dataset.num_classes,
        num_components=config.num_components)
    sanity = mi_face_eval.evaluator_accuracy(evaluator, dataset.train_inputs,
                                             dataset.train_labels)
    print(f"evaluator: {config.num_components} eigenfaces fitted on the {len(dataset.test_labels)}"
          f" held-out images; identifies {sanity:.1%} of the {len(dataset.train_labels)} "
          "training images (which it never saw)", flush=True)
    labels = np.arange(dataset.num_classes)

    def score(images):
        """Scores of the raw images and of the same images at the gallery's contrast."""
        matched = mi_face_eval.match_contrast(images, dataset.train_inputs)
        return tuple(mi_face_eval.score_reconstructions(
            evaluator, stack, labels, gallery_images=dataset.train_inputs,
            gallery_labels=dataset.train_labels, key=lineup_key,
            num_lineups=config.num_lineups) for stack in (images, matched))

    rows = [_row("calibration", name, score(images)) for name, images in
            mi_face_eval.calibration_images(dataset.train_inputs, dataset.train_labels, labels,
                                            num_classes=dataset.num_classes,
                                            key=noise_key).items()]
    targets, pictures = {}, {}
    for kind, key in zip(config.targets, target_keys):
        targets[kind], target_rows, images = run_target(kind, dataset, evaluator, config, key,
                                                        score)
        rows += target_rows
        for name, stack in images.items():
            pictures[f"{kind}: {name}"] = stack
    means = mi_face_eval.person_mean_images(dataset.train_inputs, dataset.train_labels,
                                            dataset.num_classes)
    save_figure(means, pictures, out / "reconstructions.png")
    payload = {"config": dataclasses.asdict(config), "dataset": dataset.summary(),
               "evaluator_accuracy_on_unseen_training_images": sanity, "targets": targets,
               "rows": rows, "paper_times_per_reconstruction": PAPER_TIMES,
               "versions": report.package_versions()}
    report.write_json(out / report.REPORT_JSON, payload)
    (out / report.REPORT_MD).write_text(render_markdown(payload), encoding="utf-8")
    return payload


def _fmt(value, pattern):
    return "–" if value is None else pattern.format(value)


def render_markdown(payload: dict) -> str:
    """The report as Markdown: target errors, then one table of every row."""
    lines = ["# MI-FACE on AT&T faces", "",
             f"Evaluator: eigenfaces fitted on the held-out images; it identifies "
             f"{payload['evaluator_accuracy_on_unseen_training_images']:.1%} of the real "
             "training images. Chance: identification 2.5%, lineup 20%.", ""]
    for kind, t in payload["targets"].items():
        lines.append(f"- {kind}: train error {t['train_error']:.2%}, test error "
                     f"{t['test_error']:.2%}; paper per reconstruction: {PAPER_TIMES[kind]}")
    rows = [[r["target"], r["row"], f"{r['identification_rate']:.1%}",
             f"{r['lineup_accuracy']:.1%}", f"{r['ssim']:.3f}", f"{r['mse']:.4f}",
             f"{r['auto_contrast']['identification_rate']:.1%}",
             f"{r['auto_contrast']['lineup_accuracy']:.1%}",
             f"{r['auto_contrast']['ssim']:.3f}",
             _fmt(r["mean_steps"], "{:.1f}"), _fmt(r["seconds"], "{:.2f}"),
             _fmt(r["compile_seconds"], "{:.2f}")] for r in payload["rows"]]
    return "\n".join(lines) + "\n\n" + report.markdown_table(HEADER, rows) + "\n"




def run_mi_face_job(config: ExperimentConfig, out_dir, *, overwrite: bool = False) -> dict:
    """Runs :func:`run` inside an atomic report folder (see :mod:`jaxreform.report`)."""
    with report.report_folder(out_dir, overwrite=overwrite) as staging:
        payload = run(config, staging)
        payload["files"] = ["report.json", "report.md", "reconstructions.png"]
        report.write_json(staging / report.REPORT_JSON, payload)
    return payload
