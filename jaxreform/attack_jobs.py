"""Attack jobs behind ``jaxreform attack ...``: each writes a report folder like the main job.

:func:`run_attribute_job` (``jaxreform attack attribute``): train the task model on the clean
tabular data and on reformed data, then run the Fredrikson et al. (2014) attribute-inference
attack against each deployed model (classifier ∘ transform), on the training records (what
the model saw) and on held-out test records, beside the prior-only baseline.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxreform import _validate, data, pipeline, plots, report
from jaxreform.attacks import attribute

ENCODED_LOADERS = {"adult": data.load_adult_with_encoding,
                   "malware": data.load_malware_with_encoding}


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttributeJobConfig:
    """An attribute-inference run.

    Attributes:
        run: Dataset, reformer, task model and training settings (a main-job
            :class:`~jaxreform.pipeline.RunConfig`; its dataset must be tabular).
        attribute: Categorical column to infer, e.g. ``"marital-status"``.
        num_attacked: Records attacked on each side (train and test); None: all.
    """

    run: pipeline.RunConfig
    attribute: str = "marital-status"
    num_attacked: int | None = 5000

    def __post_init__(self):
        _validate.check_choice("dataset for attribute inference", self.run.dataset,
                               ENCODED_LOADERS)
        if self.num_attacked is not None:
            _validate.check_integers(num_attacked=self.num_attacked)
            _validate.check_positive(num_attacked=self.num_attacked)


def deployed_apply(module, fitted):
    """``apply(params, x)`` of classifier ∘ the reformer's deployment transform, as a pure
    function of the classifier's params (jit/vmap-able; the encoder's params are closed over)."""
    autoencoder = getattr(fitted, "autoencoder", None)
    if autoencoder is None:
        return module.apply
    encoder_params = fitted.encoder_params

    def apply(params, inputs):
        return module.apply(params, autoencoder.apply(encoder_params, inputs, method="encode"))

    return apply


def run_attribute_job(config: AttributeJobConfig, out_dir: str | Path, *,
                      overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Runs the attribute-inference job and writes ``report.json``, ``report.md`` and
    ``attribute.png`` into ``out_dir`` (atomically; see :func:`jaxreform.report.report_folder`).

    Returns:
        The report as written to ``report.json``.
    """
    run = config.run
    dataset, encoding = ENCODED_LOADERS[run.dataset](run.data_dir)
    encoding.categorical(config.attribute)  # refuses an unknown or continuous column now
    with report.report_folder(out_dir, overwrite=overwrite) as staging:
        keys = dict(zip(("clean", "reformer", "reformed", "train_rows", "test_rows"),
                        jax.random.split(jax.random.key(run.seed), 5)))
        x_train, y_train = jnp.asarray(dataset.train_inputs), jnp.asarray(dataset.train_labels)
        x_test, y_test = jnp.asarray(dataset.test_inputs), jnp.asarray(dataset.test_labels)
        models_under_attack = {}
        clean_module, clean_fit = pipeline.train_task_model(
            keys["clean"], run, dataset.num_classes, x_train, y_train, x_test, y_test,
            progress=progress, description="clean model")
        models_under_attack["clean"] = (clean_module.apply, clean_fit.params)
        fitted = None
        if run.reformer != "none":
            fitted = run.make_reformer().fit(keys["reformer"], x_train, y_train,
                                             progress=progress)
            module, fit = pipeline.train_task_model(
                keys["reformed"], run, dataset.num_classes, fitted.reformed_train, y_train,
                fitted.transform(x_test), y_test, progress=progress,
                description="reformed model")
            models_under_attack[f"reformed ({run.reformer})"] = (deployed_apply(module, fitted),
                                                                  fit.params)
        sides = {"train": (x_train, y_train, keys["train_rows"]),
                 "test": (x_test, y_test, keys["test_rows"])}
        results = {}
        for name, (apply_fn, params) in models_under_attack.items():
            accuracy = float(jnp.mean(jnp.argmax(apply_fn(params, x_test), -1) == y_test))
            results[name] = {"test_accuracy": accuracy}
            for side, (inputs, labels, key) in sides.items():
                size = min(config.num_attacked or len(labels), len(labels))
                rows = data.subset_indices(key, len(labels), size)
                outcome = attribute.attribute_inference_attack(
                    apply_fn, params, inputs[rows], labels[rows], encoding, config.attribute)
                results[name][side] = outcome.summary()
        bars = {f"{name.split(' (')[0]}\n{side}": {"attack": r[side]["accuracy"],
                                    "prior only": r[side]["baseline_accuracy"]}
                for name, r in results.items() for side in sides}
        plots.grouped_bars(bars, staging / "attribute.png", ylabel="accuracy",
                           title=f"inferring {config.attribute} ({run.dataset})")
        payload = {
            "jaxreform_report": 1, "command": "attack attribute",
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "config": dataclasses.asdict(config), "data": dataset.summary(),
            "versions": report.package_versions(), "results": results,
            "reformer": fitted.info if fitted is not None else None,
            "files": ["report.json", "report.md", "attribute.png"],
        }
        report.write_json(staging / report.REPORT_JSON, payload)
        (staging / report.REPORT_MD).write_text(_attribute_markdown(payload), encoding="utf-8")
    return payload


def _attribute_markdown(payload: dict) -> str:
    config = payload["config"]
    rows = [[name, side, r[side]["num_records"], r[side]["accuracy"],
             r[side]["baseline_accuracy"], r[side]["advantage"], r["test_accuracy"]]
            for name, r in payload["results"].items() for side in ("train", "test")]
    return "\n".join([
        f"# jaxreform attack attribute: `{config['attribute']}` on {config['run']['dataset']}",
        "", "Fredrikson et al. (2014): for each record the attacker knows the label and every "
        "other attribute, scores each candidate value by the model's probability of the label "
        "times the value's prior, and guesses the best. The baseline guesses the most "
        "frequent value. Advantage = attack accuracy minus baseline.", "",
        report.markdown_table(["model", "records", "n", "attack accuracy", "baseline",
                               "advantage", "model test accuracy"], rows),
        "", "![attack vs baseline](attribute.png)", ""])
