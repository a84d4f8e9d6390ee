"""The main job: reform the training data, train on clean and reformed data, measure, report.

:func:`run_main_job` is what ``jaxreform run`` calls; notebooks can call it (or its stages)
directly. Stages, each timed:

1. load the dataset (optionally a deterministic subset);
2. train the task model on the clean data;
3. fit the reformer and reform the training data;
4. train the same task model on the reformed data (deployed as classifier ∘ transform);
5. measure accuracy, the relative L0/L2/L∞ change of the data, and the loss-threshold
   membership attack on balanced members / non-members, for both models;
6. write the report folder (``report.json``, ``report.md``, ``reformed.png``, ``roc.png``,
   ``training.png``, ``mia_scores.npz``) atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxreform import (
    _validate,
    data,
    dp,
    influence,
    metrics,
    models,
    plots,
    reformers,
    report,
    train,
)
from jaxreform.errors import ConfigError

# The seed's MNIST figures; the clean floor is the one issue #2 sets beside the seed's 91.7%.
SEED_CLAIMS = {
    "clean_accuracy": 0.917,
    "clean_accuracy_floor": 0.915,
    "max_accuracy_drop": 0.05,
    "min_mean_relative_change": 0.45,
    "influence_min_change": 0.30,
    "influence_min_accuracy": 0.87,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything that determines a run; stored resolved in ``report.json``.

    Attributes:
        dataset: Dataset name (see :data:`jaxreform.data.LOADERS`).
        data_dir: Data folder; None uses ``$JAXREFORM_DATA_DIR`` or the embedded subset.
        reformer: Reformer name (see :data:`jaxreform.reformers.REFORMERS`).
        model: Task model: ``"softmax"``, ``"mlp"`` or ``"cnn"``.
        seed: The one seed every random choice of the run derives from.
        num_train: Use a random subset of this many training examples (None: all).
        num_test: Likewise for the test set.
        classifier: How the task model is trained (on clean and on reformed data alike).
        autoencoder_architecture: ``"dense"`` or ``"conv"``.
        autoencoder_hidden: Hidden widths (dense) or channels (conv) of the encoder.
        autoencoder_training: How the autoencoder is trained.
        influence_budget: Influence reformer: relative L2 change of each training example.
        influence_noise: ``"orthogonal"`` (the reformer) or the controls ``"isotropic"`` and
            ``"along"``.
        influence_per_class: One influence direction per class instead of one in all.
        influence_l2: L2 penalty λ of the model the influence is computed for.
        influence_clip: Keep reformed inputs in [0, 1] (alternating projections).
        influence_hvp_chunk_size: Examples per chunk of the solver's curvature products.
        solver: Inverse-HVP solver and its settings.
        num_attack_examples: Members and, as many, non-members for the membership attack
            (None: as many as the test set, capped by the training set).
        l0_tolerance: A coordinate counts as changed by more than this (default: half a grey
            level of an 8-bit image).
        dp_epsilon: Train the task model on the (reformed) data with DP-SGD to this ε; the
            clean reference model stays non-private. None: no DP for the task model.
        dp_autoencoder_epsilon: ``dp-autoencoder`` reformer: train the autoencoder with DP-SGD
            to this ε (option (a) of :mod:`jaxreform.reformers.dp_autoencoder`).
        code_noise_epsilon: ``dp-autoencoder``: ε of the per-record Gaussian mechanism on the
            released codes (option (c)).
        code_clip_norm: ``dp-autoencoder``: L2 clip norm of each code before noise.
        code_size: ``dp-autoencoder``/``autoencoder`` (dense): a code of this length instead
            of the input's shape.
        dp_training: DP-SGD settings (batch, clip, learning rate, δ, accountant) shared by the
            task model and the autoencoder; their ε comes from the fields above.
    """

    dataset: str = "mnist"
    data_dir: str | None = None
    reformer: str = "autoencoder"
    model: str = "softmax"
    seed: int = 0
    num_train: int | None = None
    num_test: int | None = None
    classifier: train.TrainConfig = train.TrainConfig(epochs=10, batch_size=128,
                                                      learning_rate=1e-3)
    autoencoder_architecture: str = "dense"
    autoencoder_hidden: tuple[int, ...] = (512,)
    autoencoder_training: train.TrainConfig = train.TrainConfig(epochs=5, batch_size=128,
                                                                learning_rate=1e-3)
    influence_budget: float = 0.3
    influence_noise: str = "orthogonal"
    influence_per_class: bool = False
    influence_l2: float = 0.01
    influence_clip: bool = False
    influence_hvp_chunk_size: int | None = None
    solver: influence.SolverConfig = influence.SolverConfig(method="cg", tolerance=1e-4)
    num_attack_examples: int | None = None
    l0_tolerance: float = 0.5 / 255
    dp_epsilon: float | None = None
    dp_autoencoder_epsilon: float | None = None
    code_noise_epsilon: float | None = None
    code_clip_norm: float = 5.0
    code_size: int | None = None
    dp_training: dp.DpSgdConfig = dp.DpSgdConfig(target_epsilon=1.0, epochs=10,
                                                 expected_batch_size=256, clip_norm=1.0,
                                                 learning_rate=0.1)

    def __post_init__(self):
        _validate.check_choice("dataset", self.dataset, data.LOADERS)
        _validate.check_choice("reformer", self.reformer, reformers.REFORMERS)
        _validate.check_choice("model", self.model, models.CLASSIFIERS)
        for name in ("num_train", "num_test", "num_attack_examples"):
            value = getattr(self, name)
            if value is not None:
                _validate.check_positive(**{name: value})
        _validate.check_fraction(l0_tolerance=self.l0_tolerance)
        _validate.check_integers(seed=self.seed)
        if not -(2**63) <= self.seed < 2**63:
            raise ConfigError(f"seed must fit in 64 bits, got seed={self.seed}.")
        for name in ("dp_epsilon", "dp_autoencoder_epsilon", "code_noise_epsilon"):
            value = getattr(self, name)
            if value is not None:
                _validate.check_finite_numbers(**{name: value})
                _validate.check_positive(**{name: value})
        if self.reformer != "dp-autoencoder" and (self.dp_autoencoder_epsilon is not None
                                                  or self.code_noise_epsilon is not None):
            raise ConfigError("dp_autoencoder_epsilon and code_noise_epsilon apply to "
                              "--reformer dp-autoencoder only.")
        self.make_reformer()  # refuses a bad reformer setting now, not after training
        if self.dp_epsilon is not None:
            self.task_dp_config()

    def task_dp_config(self) -> dp.DpSgdConfig:
        """DP-SGD settings of the task model (``dp_training`` with ``dp_epsilon`` and the
        classifier's epochs)."""
        return dataclasses.replace(self.dp_training, target_epsilon=self.dp_epsilon,
                                   noise_multiplier=None, epochs=self.classifier.epochs)

    def make_reformer(self) -> reformers.Reformer:
        """The reformer this config names, with its settings."""
        if self.reformer == "autoencoder":
            return reformers.make_reformer(
                "autoencoder", architecture=self.autoencoder_architecture,
                hidden_sizes=tuple(self.autoencoder_hidden),
                train_config=self.autoencoder_training,
            )
        if self.reformer == "influence":
            return reformers.make_reformer(
                "influence", budget=self.influence_budget, noise=self.influence_noise,
                model=self.model, per_class=self.influence_per_class,
                l2_penalty=self.influence_l2, solver=self.solver,
                train_config=self.classifier,
                clip=(0.0, 1.0) if self.influence_clip else None,
                hvp_chunk_size=self.influence_hvp_chunk_size,
            )
        if self.reformer == "dp-autoencoder":
            dp_training = None
            if self.dp_autoencoder_epsilon is not None:
                dp_training = dataclasses.replace(
                    self.dp_training, target_epsilon=self.dp_autoencoder_epsilon,
                    noise_multiplier=None, epochs=self.autoencoder_training.epochs)
            return reformers.make_reformer(
                "dp-autoencoder", architecture=self.autoencoder_architecture,
                hidden_sizes=tuple(self.autoencoder_hidden), code_size=self.code_size,
                train_config=self.autoencoder_training, dp_training=dp_training,
                code_noise_epsilon=self.code_noise_epsilon, code_clip_norm=self.code_clip_norm,
                code_delta=self.dp_training.delta)
        return reformers.make_reformer(self.reformer)


class StageTimer:
    """Times named stages and, if ``verbose``, announces each on stderr."""

    def __init__(self, total: int, verbose: bool):
        self.seconds: dict[str, float] = {}
        self.total = total
        self.verbose = verbose

    @contextlib.contextmanager
    def stage(self, name: str, message: str):
        if self.verbose:
            print(f"[{len(self.seconds) + 1}/{self.total}] {message}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start


def train_task_model(
    key: jax.Array, config: RunConfig, num_classes: int, train_inputs, train_labels,
    test_inputs, test_labels, *, progress: bool, description: str,
    dp_config: dp.DpSgdConfig | None = None,
):
    """Initialises and trains the task model; returns ``(module, FitResult or DpFitResult)``.

    With ``dp_config`` it is trained with DP-SGD. The test accuracy after every epoch is kept
    in the history (``test_accuracy``).
    """
    module = models.CLASSIFIERS[config.model](num_classes=num_classes)
    init_key, fit_key = jax.random.split(key)
    params = module.init(init_key, train_inputs[:1])
    loss_fn = train.cross_entropy_loss(module.apply, l2_penalty=config.classifier.l2_penalty)

    def evaluate(current_params):
        return {"test_accuracy": train.accuracy(module.apply, current_params, test_inputs,
                                                test_labels)}

    if dp_config is not None:
        config_l2 = dataclasses.replace(dp_config, l2_penalty=config.classifier.l2_penalty)
        return module, dp.fit_dp(fit_key, module.apply, dp.cross_entropy_example_loss, params,
                                 (train_inputs, train_labels), config_l2,
                                 covers="the released task model", evaluate=evaluate,
                                 progress=progress, description=description)
    result = train.fit(fit_key, loss_fn, params, (train_inputs, train_labels), config.classifier,
                       evaluate=evaluate, progress=progress, description=description)
    return module, result


def membership_attack(module, params, train_inputs, train_labels, member_index,
                      nonmember_inputs, nonmember_labels) -> tuple[dict, dict]:
    """Loss-threshold attack on one deployed model; returns ``(metrics, raw losses)``.

    ``train_inputs`` are what the model was trained on (already transformed); members are the
    rows ``member_index`` of them. τ is the mean loss over the whole training set (Yeom et al.).
    """
    train_losses = train.per_example_losses(module.apply, params, train_inputs, train_labels)
    nonmember_losses = train.per_example_losses(module.apply, params, nonmember_inputs,
                                                nonmember_labels)
    member_losses = train_losses[member_index]
    result = metrics.loss_threshold_attack(member_losses, nonmember_losses,
                                           threshold=float(jnp.mean(train_losses)))
    return result, {"member": np.asarray(member_losses), "nonmember": np.asarray(nonmember_losses)}


def _attack_split(key, config: RunConfig, num_train: int, num_test: int):
    size = min(num_train, num_test)
    if config.num_attack_examples is not None:
        if config.num_attack_examples > size:
            raise ConfigError(
                f"num_attack_examples={config.num_attack_examples} exceeds the {size} examples "
                "available on each side (min of training and test sizes)."
            )
        size = config.num_attack_examples
    member_key, nonmember_key = jax.random.split(key)
    return (data.subset_indices(member_key, num_train, size),
            data.subset_indices(nonmember_key, num_test, size))


def run_main_job(
    config: RunConfig, out_dir: str | Path, *, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Runs the main job (see the module docstring) and writes its report folder.

    Args:
        config: The run's settings.
        out_dir: Report folder; refused if it holds a report and ``overwrite`` is False, or
            if it holds anything else. Checked before any work starts.
        overwrite: Replace a previous report in ``out_dir`` (atomically, at the end).
        progress: Print stages and progress bars on stderr.

    Returns:
        The report as written to ``report.json``.
    """
    with report.report_folder(out_dir, overwrite=overwrite) as staging:
        payload = _run_stages(config, staging, progress=progress)
    return payload


def _run_stages(config: RunConfig, staging: Path, *, progress: bool) -> dict[str, Any]:
    timer = StageTimer(total=6, verbose=progress)
    keys = dict(zip(("subset", "clean", "reformer", "reformed", "attack"),
                    jax.random.split(jax.random.key(config.seed), 5)))

    with timer.stage("load", f"loading {config.dataset}"):
        dataset = data.load_dataset(config.dataset, config.data_dir)
        if config.num_train is not None or config.num_test is not None:
            dataset = data.take_subset(dataset, keys["subset"], num_train=config.num_train,
                                       num_test=config.num_test)
        members, nonmembers = _attack_split(keys["attack"], config, len(dataset.train_labels),
                                            len(dataset.test_labels))
        if progress:
            print(f"      source: {dataset.source}; {len(dataset.train_labels):,} train / "
                  f"{len(dataset.test_labels):,} test", file=sys.stderr)
    x_train, y_train = jnp.asarray(dataset.train_inputs), jnp.asarray(dataset.train_labels)
    x_test, y_test = jnp.asarray(dataset.test_inputs), jnp.asarray(dataset.test_labels)

    with timer.stage("train_clean", f"training the {config.model} task model on clean data"):
        clean_module, clean_fit = train_task_model(
            keys["clean"], config, dataset.num_classes, x_train, y_train, x_test, y_test,
            progress=progress, description="clean model")
        jax.block_until_ready(clean_fit.params)

    with timer.stage("reform", f"reforming the training data ({config.reformer})"):
        fitted = config.make_reformer().fit(keys["reformer"], x_train, y_train,
                                            progress=progress)
        x_reformed = jax.block_until_ready(fitted.reformed_train)
        x_test_deployed = fitted.transform(x_test)

    with timer.stage("train_reformed", "training the task model on reformed data"):
        reformed_module, reformed_fit = train_task_model(
            keys["reformed"], config, dataset.num_classes, x_reformed, y_train, x_test_deployed,
            y_test, progress=progress, description="reformed model",
            dp_config=config.task_dp_config() if config.dp_epsilon is not None else None)
        jax.block_until_ready(reformed_fit.params)

    with timer.stage("measure", "measuring accuracy, data change and membership inference"):
        results, clean_losses, reformed_losses = _measure(
            config, fitted, (clean_module, clean_fit), (reformed_module, reformed_fit),
            (x_train, y_train, x_test, y_test), x_reformed, x_test_deployed, members, nonmembers)
    in_input_space = x_reformed.shape == x_train.shape

    with timer.stage("report", "writing the report"):
        files = _write_pictures(staging, dataset, x_train, x_reformed, in_input_space,
                                clean_losses, reformed_losses, clean_fit, reformed_fit)
        np.savez(staging / "mia_scores.npz",
                 clean_member_losses=clean_losses["member"],
                 clean_nonmember_losses=clean_losses["nonmember"],
                 reformed_member_losses=reformed_losses["member"],
                 reformed_nonmember_losses=reformed_losses["nonmember"])
        files.append("mia_scores.npz")
        seconds = dict(timer.seconds)
        results["timing"] = {
            "seconds": seconds,
            "reform_overhead": seconds["reform"] / seconds["train_clean"],
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
        }
        payload = {
            "jaxreform_report": 1,
            "command": "run",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "config": dataclasses.asdict(config),
            "data": {**dataset.summary(),
                     "embedded_subset": dataset.source == data.EMBEDDED_SOURCE},
            "versions": report.package_versions(),
            "results": results,
            "seed_comparison": seed_comparison(results),
            "files": ["report.json", "report.md", *files],
        }
        report.write_json(staging / report.REPORT_JSON, payload)
        (staging / report.REPORT_MD).write_text(render_markdown(payload), encoding="utf-8")
    return payload


def _measure(config, fitted, clean, reformed, arrays, x_reformed, x_test_deployed, members,
             nonmembers):
    """Accuracy, data change and the membership attack for both models; returns
    ``(results, clean losses, reformed losses)``."""
    x_train, y_train, x_test, y_test = arrays

    def accuracies(model, inputs_train, inputs_test):
        module, fit_result = model
        return {
            "test_accuracy": train.accuracy(module.apply, fit_result.params, inputs_test, y_test),
            "train_accuracy": train.accuracy(module.apply, fit_result.params, inputs_train,
                                             y_train),
            "history": fit_result.history,
        }

    clean_attack, clean_losses = membership_attack(
        clean[0], clean[1].params, x_train, y_train, members, x_test[nonmembers],
        y_test[nonmembers])
    reformed_attack, reformed_losses = membership_attack(
        reformed[0], reformed[1].params, x_reformed, y_train, members,
        x_test_deployed[nonmembers], y_test[nonmembers])
    in_input_space = x_reformed.shape == x_train.shape
    results = {
        "clean": accuracies(clean, x_train, x_test),
        "reformed": accuracies(reformed, x_reformed, x_test_deployed),
        "distances": (metrics.summarize_distances(x_train, x_reformed,
                                                  l0_tolerance=config.l0_tolerance)
                      if in_input_space else None),
        "membership_inference": {"attack": "loss_threshold (Yeom et al. 2018)",
                                 "clean": clean_attack, "reformed": reformed_attack},
        "reformer": {"name": config.reformer, **fitted.info},
    }
    results["privacy"] = _guarantees(fitted, reformed[1])
    results["accuracy_drop"] = (results["clean"]["test_accuracy"]
                                - results["reformed"]["test_accuracy"])
    return results, clean_losses, reformed_losses


def _guarantees(fitted, reformed_fit) -> list[dict]:
    """Every differential-privacy statement of the run, each saying what it covers."""
    found = list(fitted.info.get("guarantees", []))
    if isinstance(reformed_fit, dp.DpFitResult):
        found.append(reformed_fit.guarantee.as_dict())
    return found


def _write_pictures(folder: Path, dataset, x_train, x_reformed, in_input_space, clean_losses,
                    reformed_losses, clean_fit, reformed_fit) -> list[str]:
    files = []
    if in_input_space and dataset.train_inputs.ndim == 4:
        plots.reformed_grid(np.asarray(x_train[:10]), np.asarray(x_reformed[:10]),
                            folder / "reformed.png", labels=dataset.train_labels[:10],
                            num_examples=10)
        files.append("reformed.png")
    curves = {}
    for name, losses in (("clean", clean_losses), ("reformed", reformed_losses)):
        fpr, tpr = metrics.roc_points(-jnp.asarray(losses["member"]),
                                      -jnp.asarray(losses["nonmember"]))
        curves[name] = (np.asarray(fpr), np.asarray(tpr))
    plots.roc_loglog(curves, folder / "roc.png")
    plots.training_curves({"clean": clean_fit.history, "reformed": reformed_fit.history},
                          folder / "training.png")
    return files + ["roc.png", "training.png"]


def seed_comparison(results: dict) -> dict:
    """The seed's claims beside what this run measured (a claim may fail: that is reported).

    The claims depend on the reformer: for the autoencoder, accuracy within 5 points and a
    mean change of at least 45% in each norm; for the influence reformer, a relative L2 change
    of at least 30% with test accuracy of at least 87%. Both compare with a clean softmax
    regression of 91.7% on full MNIST.
    """
    if results["reformer"]["name"] == "influence":
        return _influence_claims(results)
    comparison = {
        "clean accuracy >= 91.5% (seed paper: 91.7%)": {
            "seed": SEED_CLAIMS["clean_accuracy"], "measured": results["clean"]["test_accuracy"],
            "holds": results["clean"]["test_accuracy"] >= SEED_CLAIMS["clean_accuracy_floor"]},
        "accuracy drop (clean minus reformed) <= 5 points": {
            "seed": SEED_CLAIMS["max_accuracy_drop"], "measured": results["accuracy_drop"],
            "holds": results["accuracy_drop"] <= SEED_CLAIMS["max_accuracy_drop"]},
    }
    if results["distances"] is not None:
        for norm in ("l0", "l2", "linf"):
            mean = results["distances"][norm]["mean"]
            comparison[f"mean relative {norm} change >= 45%"] = {
                "seed": SEED_CLAIMS["min_mean_relative_change"], "measured": mean,
                "holds": mean >= SEED_CLAIMS["min_mean_relative_change"]}
    return comparison


def _influence_claims(results: dict) -> dict:
    accuracy = results["reformed"]["test_accuracy"]
    change = results["distances"]["l2"]["mean"]
    return {
        "clean accuracy >= 91.5% (seed paper: 91.7%)": {
            "seed": SEED_CLAIMS["clean_accuracy"], "measured": results["clean"]["test_accuracy"],
            "holds": results["clean"]["test_accuracy"] >= SEED_CLAIMS["clean_accuracy_floor"]},
        "mean relative l2 change >= 30%": {"seed": SEED_CLAIMS["influence_min_change"],
                                           "measured": change,
                                           "holds": change >= SEED_CLAIMS["influence_min_change"]},
        "reformed accuracy >= 87%": {"seed": SEED_CLAIMS["influence_min_accuracy"],
                                     "measured": accuracy,
                                     "holds": accuracy >= SEED_CLAIMS["influence_min_accuracy"]},
    }


def _reformer_lines(info: dict) -> list[str]:
    rows = [[key, value] for key, value in info.items()
            if isinstance(value, (int, float, str, bool)) or value is None]
    return ["## Reformer", "", report.markdown_table(["setting or diagnostic", "value"], rows), ""]


def _privacy_lines(guarantees: list[dict]) -> list[str]:
    if not guarantees:
        return ["## Differential privacy", "", "None: no part of this run is differentially "
                "private (the attacks above are the only privacy evidence).", ""]
    rows = [[g["covers"], g["epsilon"], f"{g['delta']:g}", g["accountant"], g["mechanism"]]
            for g in guarantees]
    return ["## Differential privacy", "", "Each bound covers only what its row names.", "",
            report.markdown_table(["covers", "epsilon", "delta", "accountant", "mechanism"],
                                  rows), ""]


def render_markdown(payload: dict) -> str:
    """The human-readable ``report.md`` of a main-job report."""
    config, results, info = payload["config"], payload["results"], payload["data"]
    lines = [f"# jaxreform run: {config['dataset']}, reformer `{config['reformer']}`, "
             f"model `{config['model']}`", ""]
    source = info["source"]
    if info["embedded_subset"]:
        source += " (**a small subset**: pass `--data-dir` for the full data)"
    lines += [f"Data: {info['num_train']:,} training / {info['num_test']:,} test examples from "
              f"{source}. Seed {config['seed']}. Created {payload['created']}.", ""]
    lines += ["## Accuracy", "", report.markdown_table(
        ["task model trained on", "test accuracy", "train accuracy"],
        [["clean data", results["clean"]["test_accuracy"], results["clean"]["train_accuracy"]],
         ["reformed data (deployed as classifier ∘ transform)",
          results["reformed"]["test_accuracy"], results["reformed"]["train_accuracy"]]]),
        "", f"Reformed minus clean: {-100 * results['accuracy_drop']:+.2f} points of test "
            "accuracy.", ""]
    if results["distances"] is not None:
        d = results["distances"]
        lines += ["## Change of the training data (relative, per example)", "",
                  report.markdown_table(
                      ["norm", "mean", "q05", "median", "q95", "undefined"],
                      [[name, d[key]["mean"], d[key]["q05"], d[key]["q50"], d[key]["q95"],
                        d[key]["undefined"]]
                       for name, key in (("L0 (fraction changed)", "l0"), ("L2", "l2"),
                                         ("L∞", "linf"))]),
                  "", f"L0 counts coordinates that moved by more than {d['l0_tolerance']:.4g}.",
                  "", "![original, reformed, difference](reformed.png)", ""]
    mia = results["membership_inference"]
    keys = ("auc", "advantage", "max_advantage", "precision", "recall", "tpr_at_1%_fpr",
            "tpr_at_0.1%_fpr")
    lines += ["## Loss-threshold membership inference (Yeom et al. 2018)", "",
              f"{mia['clean']['num_members']:,} members vs {mia['clean']['num_nonmembers']:,} "
              "non-members; threshold = mean training loss.", "",
              report.markdown_table(["model", *keys],
                                    [[name, *(mia[name][k] for k in keys)]
                                     for name in ("clean", "reformed")]),
              "", "![log-log ROC](roc.png)", ""]
    lines += _privacy_lines(results.get("privacy", []))
    lines += _reformer_lines(results["reformer"])
    timing = results["timing"]
    lines += ["## Time", "", report.markdown_table(
        ["stage", "seconds"], [[k, v] for k, v in timing["seconds"].items()]), "",
        f"Reforming took {timing['reform_overhead']:.2f}× the time of training the clean task "
        f"model ({timing['backend']}).", "", "![training curves](training.png)", ""]
    scope = ("The seed's figures are for full MNIST with softmax regression; on this "
             "subset or another setting they are a reference, not a target.")
    lines += ["## Against the seed's claims", "", scope, "", report.markdown_table(
        ["claim", "seed paper", "measured", "holds"],
        [[name, c["seed"], c["measured"], c.get("holds", "")]
         for name, c in payload["seed_comparison"].items()]), ""]
    return "\n".join(lines)
