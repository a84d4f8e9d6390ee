"""jaxreform's MI-FACE against ART's MIFace, on the same AT&T softmax-regression target.

One run: the softmax target of :mod:`jaxreform.attacks.mi_face_targets` is trained on the AT&T
faces, its weights are copied into a ``torch.nn.Linear`` (flattened 112 x 92 input, 40
outputs; checked to give the same logits) and wrapped in ART's ``PyTorchClassifier``
(cross-entropy loss, ``input_shape=(112, 92, 1)``, ``nb_classes=40``, ``clip_values=(0, 1)``).
Both attacks then run the same number of gradient steps ``--steps`` with step size λ = 0.1
(the paper's): jaxreform inverts all 40 labels in one jitted call
(``MIFaceConfig.fixed_steps``); ART inverts the first ``--art-labels`` labels, one at a time
(its default ``batch_size=1``). Printed: label-steps per second and their ratio, jaxreform's
compile time, and per label the difference between the two reconstructions.

ART 1.20.1's ``MIFace.infer`` (art/attacks/inference/model_inversion/mi_face.py), per batch::

    x = 0; window = [inf] * window_length; active = all; i = 0
    while i < max_iter and any(active):
        x[active] = clip(x[active] + learning_rate * class_gradient(x[active], label))
        cost = 1 - predict(x)[label]               # predict runs on the whole batch
        active = (cost <= threshold) | (cost >= max(window))
        window[i % window_length] = cost; i += 1
    return x                                       # the last iterate, not the arg-min

Three things differ from the paper's Algorithm 1 (and from jaxreform):

* ``class_gradient`` and ``predict`` use the model's raw output. With a model that returns
  logits (the plain ``Linear``), ART ascends the label's *logit*, not its softmax
  probability: for a linear model that gradient is the constant weight column w_label, so each
  pixel just walks to 0 or 1 by the sign of its weight, and ``cost = 1 - logit`` is not a
  confidence. Only a model that ends in a softmax makes ART's step the paper's
  ``x - λ ∇(1 - f_label(x))``; both wrappings are run here ("ART logits", "ART softmax").
* The stopping rule is the paper's *inverted*: the paper stops when ``c <= γ`` or
  ``c >= max(window)``; ART keeps exactly those labels active and stops the others (a label
  whose cost is above ``threshold`` and below the worst cost in its window). With the
  defaults (``threshold=0.99``, ``window_length=100``) a label whose confidence is above 0.01
  never stops, so ART runs all ``max_iter`` steps; with ``threshold=0.5`` it stops after one
  step (both checked by the run: "ART's own stopping rule" below). Here ``threshold=inf`` makes
  ``cost <= threshold`` always true, so every label runs exactly ``max_iter`` steps (the calls
  to ``class_gradient`` are counted to confirm it).
* It returns the last iterate; jaxreform returns the arg-min of the cost over the iterates.
  The comparison below uses jaxreform's last iterate (recomputed for the shared labels) and
  prints the step of its arg-min.

Each ART step costs one forward and backward pass (``class_gradient``) plus one forward pass
through a ``DataLoader`` (``predict``), with NumPy round trips; jaxreform's step is one
batched ``value_and_grad`` inside ``lax.while_loop``.

ART and PyTorch are needed only for this benchmark: install them in a separate environment,
not in jaxreform's dependencies, e.g. (torch 2.13.0 is a CPU wheel; a plain ``torch`` may pull
a multi-GB CUDA build)::

    python3 -m venv /tmp/artvenv
    /tmp/artvenv/bin/pip install -e . torch==2.13.0 adversarial-robustness-toolbox==1.20.1

ART's ``batch_size`` > 1 is slower, not faster: ``class_gradient`` then runs one backward pass
per distinct label over the whole batch (300 steps measured: 755 label-steps/s at batch 1,
108 at batch 4, 74 at batch 40), so ART runs with its default ``batch_size=1``.

Usage: /tmp/artvenv/bin/python benchmarks/bench_mi_face_art.py --data-dir ../shared/data

Measured (shared 2-core CPU, 2026-12-05; jax 0.10.2, torch 2.13.0+cpu, ART 1.20.1; defaults
``--steps 5000 --art-labels 4 --seed 0``; other runs on the shared CPUs gave 19-33x)::

    MI-FACE, AT&T softmax regression (train error 0.000, test error 0.042)
    5000 steps, λ = 0.1; jax on cpu, torch threads 2
                                               jaxreform  ART softmax   ART logits
    -----------------------------------------------------------------------------
    labels inverted                                   40            4            4
    gradient steps per label                        5000         5000         5000
    seconds (jaxreform compiled)                    5.10        16.31        16.80
    jaxreform compile seconds                       0.65
    label-steps per second                         39215         1226         1191
    speed ratio jaxreform / ART                                  32.0         32.9
      the same, compile time included                            28.4         29.2
    mean |Δ pixel| vs jaxreform's x_S                        2.81e-08     4.10e-01
    max |Δ pixel| vs jaxreform's x_S                         7.15e-07     1.00e+00

    Per label: step of jaxreform's arg-min, confidence of its last iterate x_S; each ART image's
    difference from x_S and its confidence.
                          |        ART softmax         |         ART logits
    label jr best jr conf |   mean|Δ|    max|Δ|   conf |   mean|Δ|    max|Δ|   conf
        0    5000   0.994 |  2.84e-08  7.15e-07  0.994 |  4.02e-01  1.00e+00  1.000
        1    5000   0.996 |  2.85e-08  7.15e-07  0.996 |  4.02e-01  1.00e+00  1.000
        2    5000   0.993 |  2.90e-08  5.96e-07  0.993 |  4.29e-01  1.00e+00  1.000
        3    5000   0.993 |  2.65e-08  7.15e-07  0.993 |  4.07e-01  1.00e+00  1.000

    ART's own stopping rule (ART softmax, label 0, max_iter=300), steps taken:
      threshold=0.99, window_length=100: 300
      threshold=0.5, window_length=100: 1

jaxreform is ~30x faster per label-step than ART here, below the 50x aimed for (an earlier
quiet run gave 28x; one with another job busy on the CPUs gave 19x). ART's step on this tiny
linear model is ~0.8 ms, mostly Python, NumPy and DataLoader overhead, and both wrappings run
at the same speed. With a softmax at the end of the torch model ART computes the same iterates
as jaxreform (largest pixel difference 7e-7 after 5000 steps: float32 rounding). With the plain
logits model it ascends the logit instead, and its images differ by 0.41 per pixel on average:
nearly every pixel ends at 0 or 1 by the sign of its weight (confidence 1.000, but not the
paper's algorithm).
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxreform.attacks import mi_face as mf
from jaxreform.attacks.mi_face_targets import train_target
from jaxreform.data.att_faces import IMAGE_SHAPE, load_att_faces

STEP_SIZE = 0.1


def art_classifier(params, softmax: bool):
    """ART ``PyTorchClassifier`` around a ``torch.nn.Linear`` holding the jaxreform weights."""
    import torch
    from art.estimators.classification import PyTorchClassifier

    kernel = np.asarray(params["params"]["linear"]["kernel"])    # [112 * 92, 40]
    bias = np.asarray(params["params"]["linear"]["bias"])
    linear = torch.nn.Linear(*kernel.shape)
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
        linear.bias.copy_(torch.from_numpy(bias.copy()))
    # Images stay [n, 112, 92, 1] (jaxreform's layout); Flatten gives flax's row-major order.
    layers = [torch.nn.Flatten(), linear] + ([torch.nn.Softmax(dim=1)] if softmax else [])
    return PyTorchClassifier(torch.nn.Sequential(*layers), loss=torch.nn.CrossEntropyLoss(),
                             input_shape=IMAGE_SHAPE, nb_classes=kernel.shape[1],
                             clip_values=(0.0, 1.0))


def count_class_gradients(classifier) -> list[int]:
    """Wraps ``classifier.class_gradient`` to count calls; returns the (mutable) counter."""
    counter = [0]
    original = classifier.class_gradient

    def counted(*args, **kwargs):
        counter[0] += 1
        return original(*args, **kwargs)

    classifier.class_gradient = counted
    return counter


def run_art(classifier, counter, labels, steps, **overrides):
    """ART MIFace from x = 0 on ``labels``; returns images, seconds and steps taken."""
    from art.attacks.inference.model_inversion import MIFace

    settings = dict(max_iter=steps, window_length=100, threshold=float("inf"),
                    learning_rate=STEP_SIZE, batch_size=1, verbose=False)
    attack = MIFace(classifier, **{**settings, **overrides})
    counter[0] = 0
    start = time.perf_counter()
    images = attack.infer(None, np.asarray(labels))
    return images, time.perf_counter() - start, counter[0]


def jaxreform_last_iterates(target, labels, steps):
    """jaxreform's last iterate x_S (``mi_face`` returns the arg-min) for ``labels``."""
    search = mf.make_mi_face_fn(target.module.apply, image_shape=IMAGE_SHAPE,
                                config=mf.MIFaceConfig.fixed_steps(steps, step_size=STEP_SIZE),
                                outputs="logits")
    state = jax.jit(search)(target.params, jnp.asarray(labels, jnp.int32))
    return np.asarray(state.x)


def confidences(target, images, labels):
    probs = jax.nn.softmax(target.module.apply(target.params, jnp.asarray(images)))
    return np.asarray(probs)[np.arange(len(labels)), labels]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--art-labels", type=int, default=4,
                        help="ART inverts labels 0 .. N-1 (jaxreform always all 40)")
    parser.add_argument("--seed", type=int, default=0, help="train/test split and training key")
    parser.add_argument("--json", default=None, help="also save the numbers to this file")
    args = parser.parse_args(argv)
    import torch

    dataset = load_att_faces(args.data_dir, seed=args.seed)
    target = train_target("softmax", dataset, key=jax.random.key(args.seed))
    classifiers = {"ART softmax": art_classifier(target.params, softmax=True),
                   "ART logits": art_classifier(target.params, softmax=False)}
    probe = dataset.test_inputs[:8]
    logits = np.asarray(target.module.apply(target.params, jnp.asarray(probe)))
    np.testing.assert_allclose(classifiers["ART logits"].predict(probe), logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(classifiers["ART softmax"].predict(probe),
                               np.asarray(jax.nn.softmax(logits)), atol=1e-6, rtol=0)
    counters = {name: count_class_gradients(c) for name, c in classifiers.items()}

    all_labels = np.arange(dataset.num_classes)
    art_labels = all_labels[:args.art_labels]
    ours = mf.mi_face(target.module.apply, target.params, all_labels, image_shape=IMAGE_SHAPE,
                      config=mf.MIFaceConfig.fixed_steps(args.steps, step_size=STEP_SIZE),
                      outputs="logits")
    assert (ours.steps == args.steps).all(), ours.steps
    last = jaxreform_last_iterates(target, art_labels, args.steps)
    theirs = {}
    for name, classifier in classifiers.items():
        run_art(classifier, counters[name], art_labels[:1], 5)  # warm-up, untimed
        images, seconds, calls = run_art(classifier, counters[name], art_labels, args.steps)
        assert calls == args.steps * len(art_labels), (name, calls)
        theirs[name] = dict(images=images, seconds=seconds, steps=calls // len(art_labels))
    # ART's own stopping rule, one label, ART softmax: defaults, then threshold 0.5.
    check_steps = min(args.steps, 300)
    stop_check = {f"threshold={t}, window_length=100": run_art(
        classifiers["ART softmax"], counters["ART softmax"], art_labels[:1], check_steps,
        threshold=t)[2] for t in (0.99, 0.5)}

    ours_rate = len(all_labels) * args.steps / ours.seconds
    ours_rate_compile = len(all_labels) * args.steps / (ours.seconds + ours.compile_seconds)
    results = dict(steps=args.steps, step_size=STEP_SIZE, seed=args.seed,
                   train_error=target.train_error, test_error=target.test_error,
                   jaxreform=dict(labels=len(all_labels), seconds=ours.seconds,
                                  compile_seconds=ours.compile_seconds,
                                  label_steps_per_second=ours_rate,
                                  label_steps_per_second_with_compile=ours_rate_compile),
                   art_stopping_check={"max_iter": check_steps, **stop_check}, per_label=[])
    for name, run in theirs.items():
        rate = len(art_labels) * run["steps"] / run["seconds"]
        diff = np.abs(run["images"] - last)
        results[name] = dict(labels=len(art_labels), steps=run["steps"], seconds=run["seconds"],
                             label_steps_per_second=rate, speed_ratio=ours_rate / rate,
                             speed_ratio_with_compile=ours_rate_compile / rate,
                             mean_abs_diff=float(diff.mean()), max_abs_diff=float(diff.max()))
    for i, label in enumerate(art_labels):
        row = dict(label=int(label), jaxreform_best_step=int(ours.best_steps[label]),
                   jaxreform_confidence=float(confidences(target, last[i:i + 1], [label])[0]))
        for name, run in theirs.items():
            diff = np.abs(run["images"][i] - last[i])
            row[name] = dict(mean_abs_diff=float(diff.mean()), max_abs_diff=float(diff.max()),
                             confidence=float(confidences(target, run["images"][i:i + 1],
                                                          [label])[0]))
        results["per_label"].append(row)

    names = list(theirs)
    print(f"MI-FACE, AT&T softmax regression (train error {target.train_error:.3f}, test error "
          f"{target.test_error:.3f})")
    print(f"{args.steps} steps, λ = {STEP_SIZE}; jax on {jax.default_backend()}, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'':<40} {'jaxreform':>11} {names[0]:>12} {names[1]:>12}")
    print("-" * 77)

    def line(title, ours_value, key, fmt):
        cells = [f"{results[n][key]:>12{fmt}}" if key else f"{'':>12}" for n in names]
        print(f"{title:<40} {ours_value:>11} {' '.join(cells)}".rstrip())

    line("labels inverted", len(all_labels), "labels", "d")
    line("gradient steps per label", args.steps, "steps", "d")
    line("seconds (jaxreform compiled)", f"{ours.seconds:.2f}", "seconds", ".2f")
    line("jaxreform compile seconds", f"{ours.compile_seconds:.2f}", None, "")
    line("label-steps per second", f"{ours_rate:.0f}", "label_steps_per_second", ".0f")
    line("speed ratio jaxreform / ART", "", "speed_ratio", ".1f")
    line("  the same, compile time included", "", "speed_ratio_with_compile", ".1f")
    line("mean |Δ pixel| vs jaxreform's x_S", "", "mean_abs_diff", ".2e")
    line("max |Δ pixel| vs jaxreform's x_S", "", "max_abs_diff", ".2e")
    print()
    print("Per label: step of jaxreform's arg-min, confidence of its last iterate x_S; each "
          "ART image's")
    print("difference from x_S and its confidence.")
    print((f"{'':<21}" + "".join(f" | {n:^26}" for n in names)).rstrip())
    print(f"{'label':>5} {'jr best':>7} {'jr conf':>7}"
          + f" | {'mean|Δ|':>9} {'max|Δ|':>9} {'conf':>6}" * len(names))
    for row in results["per_label"]:
        print(f"{row['label']:>5} {row['jaxreform_best_step']:>7} "
              f"{row['jaxreform_confidence']:>7.3f}"
              + "".join(f" | {row[n]['mean_abs_diff']:>9.2e} {row[n]['max_abs_diff']:>9.2e} "
                        f"{row[n]['confidence']:>6.3f}" for n in names))
    print()
    print(f"ART's own stopping rule (ART softmax, label 0, max_iter={check_steps}), steps taken:")
    for setting, taken in stop_check.items():
        print(f"  {setting}: {taken}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


if __name__ == "__main__":
    main()
