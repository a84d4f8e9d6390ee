"""MI-FACE against a softmax model trained on the real AT&T faces, and its success measures."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from jaxreform import models, train
from jaxreform.attacks import mi_face_eval, mi_face_targets
from jaxreform.attacks.mi_face import MIFaceConfig, mi_face
from jaxreform.data import att_faces
from jaxreform.errors import ConfigError, InvalidDataError

SHAPE = att_faces.IMAGE_SHAPE


@pytest.fixture(scope="module")
def faces(shared_data_dir):
    if not (shared_data_dir / "att_faces").is_dir():
        pytest.skip("att_faces not staged")
    return att_faces.load_att_faces(shared_data_dir)


@pytest.fixture(scope="module")
def softmax_target(faces):
    config = train.TrainConfig(epochs=10, batch_size=40, learning_rate=1e-3)
    return mi_face_targets.train_target("softmax", faces, key=jax.random.key(0), config=config)


@pytest.fixture(scope="module")
def evaluator(faces):
    return mi_face_eval.fit_face_evaluator(faces.test_inputs, faces.test_labels,
                                           num_classes=40)


def reference_mi_face(predict_fn, params, label, config, *, outputs="logits", process=None):
    """Algorithm 1 for one label, written as a plain Python loop (the test oracle)."""
    process = process or (lambda x: jnp.clip(x, 0.0, 1.0))

    def cost(x):
        out = predict_fn(params, x[None])[0]
        probs = jax.nn.softmax(out) if outputs == "logits" else out
        return 1.0 - probs[label], probs[label]

    x = jnp.zeros(SHAPE)
    costs = [float(cost(x)[0])]
    best = (np.inf, None, None, 0)
    for i in range(1, config.max_steps + 1):
        x = process(x - config.step_size * jax.grad(lambda z: cost(z)[0])(x))
        c, confidence = (float(v) for v in cost(x))
        if c < best[0]:
            best = (c, confidence, x, i)
        if config.stopping != "fixed" and c >= max(costs[-config.patience:]):
            return best, i, "patience"
        if config.stopping == "paper" and c <= config.cost_threshold:
            return best, i, "threshold"
        if config.stopping == "confidence" and confidence >= config.target_confidence:
            return best, i, "threshold"
        costs.append(c)
    return best, config.max_steps, "max_steps"


def flip(x):
    """A Process that makes the cost oscillate, so the patience rule fires."""
    return 1.0 - jnp.clip(x, 0.0, 1.0)


@pytest.mark.parametrize("config, process", [
    (MIFaceConfig.fixed_steps(4), None),
    (MIFaceConfig.default(), None),
    (MIFaceConfig.confidence_target(0.3, step_size=20.0, max_steps=6), None),
    (MIFaceConfig.confidence_target(0.999, patience=2, max_steps=8), flip),
])
def test_matches_a_plain_python_loop(softmax_target, config, process):
    labels = np.array([3, 17])
    apply = softmax_target.module.apply
    result = mi_face(apply, softmax_target.params, labels, image_shape=SHAPE, config=config,
                     outputs="logits", process=process)
    for row, label in enumerate(labels):
        (cost, confidence, image, best_step), steps, reason = reference_mi_face(
            apply, softmax_target.params, label, config, process=process)
        assert result.steps[row] == steps and result.stop_reasons[row] == reason
        assert result.best_steps[row] == best_step
        np.testing.assert_allclose(result.images[row], image, atol=2e-6)
        np.testing.assert_allclose(result.costs[row], cost, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.confidences[row], confidence, rtol=1e-5, atol=1e-6)
    if process is flip:
        assert "patience" in result.stop_reasons


def test_matches_the_loop_on_an_mlp_with_probability_outputs():
    module = models.MLP(num_classes=5, hidden_sizes=(16,), activation=nn.sigmoid)
    params = module.init(jax.random.key(3), jnp.zeros((1, *SHAPE)))

    def predict_proba(p, x):
        return jax.nn.softmax(module.apply(p, x))

    config = MIFaceConfig.fixed_steps(3, step_size=5.0)
    result = mi_face(predict_proba, params, [0, 4], image_shape=SHAPE, config=config)
    for row, label in enumerate([0, 4]):
        (cost, _, image, _), _, _ = reference_mi_face(predict_proba, params, label, config,
                                                      outputs="probs")
        np.testing.assert_allclose(result.images[row], image, atol=2e-6)
        np.testing.assert_allclose(result.costs[row], cost, rtol=1e-5)


def test_each_label_stops_on_its_own_and_then_stays_put(softmax_target):
    labels = np.array([0, 5, 11, 23, 31])
    apply, params = softmax_target.module.apply, softmax_target.params
    config = MIFaceConfig.confidence_target(0.6, step_size=10.0, max_steps=2000)
    result = mi_face(apply, params, labels, image_shape=SHAPE, config=config, outputs="logits")
    assert (result.stop_reasons == "threshold").all()
    assert len(set(result.steps.tolist())) > 1, result.steps
    assert (result.confidences >= 0.6).all()
    # The first label to stop holds exactly what a run of that many steps alone gives, though
    # the others went on.
    early = int(np.argmin(result.steps))
    alone = mi_face(apply, params, labels[early:early + 1], image_shape=SHAPE,
                    config=MIFaceConfig.fixed_steps(int(result.steps[early]), step_size=10.0),
                    outputs="logits")
    np.testing.assert_allclose(result.images[early], alone.images[0], atol=2e-6)
    assert result.best_steps[early] == result.steps[early] < result.steps.max()


def test_the_three_stopping_modes(softmax_target):
    labels = np.arange(0, 40, 8)
    apply, params = softmax_target.module.apply, softmax_target.params
    kwargs = dict(image_shape=SHAPE, outputs="logits")
    # gamma read literally: a confidence of 0.01 is reached at once (1/40 at x_0 already).
    paper = mi_face(apply, params, labels, config=MIFaceConfig.default(), **kwargs)
    assert (paper.steps == 1).all() and (paper.stop_reasons == "threshold").all()
    assert (paper.costs <= 0.99).all()
    one_step = mi_face(apply, params, labels, config=MIFaceConfig.fixed_steps(1), **kwargs)
    np.testing.assert_array_equal(paper.images, one_step.images)
    fixed = mi_face(apply, params, labels, config=MIFaceConfig.fixed_steps(50), **kwargs)
    assert (fixed.steps == 50).all() and (fixed.stop_reasons == "max_steps").all()
    target = mi_face(apply, params, labels,
                     config=MIFaceConfig.confidence_target(0.2, step_size=10.0), **kwargs)
    assert (target.confidences >= 0.2).all() and (target.steps > 1).all()
    assert (fixed.costs < one_step.costs).all()


def test_invalid_inputs_are_refused(softmax_target):
    apply, params = softmax_target.module.apply, softmax_target.params
    kwargs = dict(image_shape=SHAPE, config=MIFaceConfig.fixed_steps(2))
    with pytest.raises(ConfigError, match=r"unknown label.*\[40\].*\[0, 39\]"):
        mi_face(apply, params, [0, 40], outputs="logits", **kwargs)
    with pytest.raises(ConfigError, match="unknown label"):
        mi_face(apply, params, [-1], outputs="logits", **kwargs)
    with pytest.raises(InvalidDataError, match="not a probability vector.*outputs='logits'"):
        mi_face(apply, params, [0], **kwargs)  # logits passed as probabilities
    with pytest.raises(InvalidDataError, match=r"does not accept images of shape \(28, 28, 1\)"):
        mi_face(apply, params, [0], outputs="logits", image_shape=(28, 28, 1),
                config=MIFaceConfig.fixed_steps(2))
    with pytest.raises(InvalidDataError, match=r"non-finite.*label\(s\) \[2\].*step\(s\) \[0\]"):
        mi_face(apply, params, [2], outputs="logits", aux_term=lambda x: jnp.sqrt(x.sum()),
                **kwargs)
    with pytest.raises(InvalidDataError, match="same shape"):
        mi_face(apply, params, [0], outputs="logits", process=lambda x: x[:10], **kwargs)
    with pytest.raises(ConfigError, match="stopping mode"):
        MIFaceConfig(stopping="forever")
    with pytest.raises(ConfigError, match="max_steps"):
        MIFaceConfig.fixed_steps(0)
    with pytest.raises(ConfigError, match="outputs kind"):
        mi_face(apply, params, [0], outputs="log_probs", **kwargs)


def test_targets_are_the_papers_models(softmax_target):
    assert softmax_target.train_error < 0.05 and softmax_target.test_error < 0.15
    mlp = mi_face_targets.make_target_module("mlp", 40)
    assert mlp.hidden_sizes == (3000,) and mlp.activation is nn.sigmoid
    with pytest.raises(ConfigError, match="needs input_shape"):
        mi_face_targets.make_target_module("dae", 40)
    with pytest.raises(ConfigError, match="unknown target"):
        mi_face_targets.make_target_module("svm", 40)


def test_the_dae_target_is_searched_in_code_space(faces):
    dae = mi_face_targets.make_target_module("dae", 40, input_shape=SHAPE)
    assert (dae.hidden_units, dae.code_size) == (1000, 300)
    target = mi_face_targets.train_target(
        "dae", faces, key=jax.random.key(1),
        config=train.TrainConfig(epochs=2, batch_size=40),
        autoencoder_config=train.TrainConfig(epochs=1, batch_size=40))
    assert 0 < target.extra["reconstruction_mse"] < 0.1
    space = target.search_space()
    assert space.shape == (300,)
    code = jnp.full((300,), 0.5)
    processed = space.process_with_params(target.params, code)
    assert processed.shape == (300,) and bool(jnp.all((processed > 0) & (processed < 1)))
    # Process is decode -> denoise -> sharpen -> encode, so it moves a code onto codes of
    # images; twice moves it less than once.
    twice = space.process_with_params(target.params, processed)
    assert float(jnp.linalg.norm(twice - processed)) < float(jnp.linalg.norm(processed - code))
    labels = np.array([0, 7, 21])
    result = mi_face(space.predict_fn, target.params, labels, image_shape=space.shape,
                     config=MIFaceConfig.fixed_steps(20), outputs="logits",
                     process_with_params=space.process_with_params)
    assert result.images.shape == (3, 300) and np.all(result.steps == 20)
    one_step = mi_face(space.predict_fn, target.params, labels, image_shape=space.shape,
                       config=MIFaceConfig.fixed_steps(1), outputs="logits",
                       process_with_params=space.process_with_params)
    assert np.all(result.costs <= one_step.costs + 1e-6)
    images = space.to_images(target.params, result.images)
    assert images.shape == (3, *SHAPE) and images.min() >= 0 and images.max() <= 1
    clip_only = target.search_space("clip")
    np.testing.assert_array_equal(clip_only.process_with_params(target.params, code * 3),
                                  jnp.ones(300))
    with pytest.raises(ConfigError, match="unknown DAE process"):
        target.search_space("nl-means")
    with pytest.raises(ConfigError, match="not both"):
        mi_face(space.predict_fn, target.params, labels, image_shape=space.shape,
                process=lambda z: z, process_with_params=space.process_with_params)


def test_blur_is_a_normalised_gaussian_filter():
    image = jnp.asarray(np.random.default_rng(0).random((20, 16, 1)), jnp.float32)
    blurred = mi_face_targets.blur(image, 1.0)
    # Away from the edges it is SciPy's Gaussian filter (nearly all mass within 4 sigma).
    reference = gaussian_filter(np.asarray(image[..., 0]), 1.0, truncate=8.0)
    np.testing.assert_allclose(blurred[6:-6, 6:-6, 0], reference[6:-6, 6:-6], atol=1e-5)
    np.testing.assert_allclose(mi_face_targets.blur(jnp.ones((9, 7, 1)), 2.0), 1.0, atol=1e-6)


def _ssim_reference(a, b):
    """SSIM with SciPy's Gaussian filter (11 taps at sigma 1.5), cropped to the valid area."""
    blur = lambda z: gaussian_filter(z, 1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731
    mx, my = blur(a), blur(b)
    vx, vy, cov = blur(a * a) - mx**2, blur(b * b) - my**2, blur(a * b) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return np.mean((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))


def test_ssim_against_scipy_and_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.random((30, 25))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    assert float(mi_face_eval.ssim(a, b)) == pytest.approx(_ssim_reference(a, b), abs=1e-5)
    assert float(mi_face_eval.ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert float(mi_face_eval.ssim(a, b)) == pytest.approx(float(mi_face_eval.ssim(b, a)))
    # Two flat images u and v: SSIM = (2uv + C1) / (u² + v² + C1), the contrast term is 1.
    u, v = 0.3, 0.7
    flat = float(mi_face_eval.ssim(np.full((20, 20), u), np.full((20, 20), v)))
    assert flat == pytest.approx((2 * u * v + 1e-4) / (u**2 + v**2 + 1e-4), rel=1e-5)


def test_lineups_are_keyed_and_give_credit_only_to_the_truth():
    gallery = jnp.asarray(np.random.default_rng(1).normal(size=(8, 1, 3)))
    labels = jnp.arange(8)
    exact = mi_face_eval.lineup_accuracies(jax.random.key(0), gallery[:, 0], labels, gallery,
                                           num_lineups=50, lineup_size=5)
    np.testing.assert_array_equal(exact, 1.0)  # the query is the true person's only image
    far = mi_face_eval.lineup_accuracies(jax.random.key(0), jnp.full((8, 3), 1e3), labels,
                                         gallery, num_lineups=50, lineup_size=5)
    again = mi_face_eval.lineup_accuracies(jax.random.key(0), jnp.full((8, 3), 1e3), labels,
                                           gallery, num_lineups=50, lineup_size=5)
    np.testing.assert_array_equal(far, again)
    assert 0.0 < float(far.mean()) < 0.6


def test_evaluator_calibration_and_the_one_step_template(faces, evaluator, softmax_target):
    labels = np.arange(40)
    kwargs = dict(gallery_images=faces.train_inputs, gallery_labels=faces.train_labels,
                  key=jax.random.key(0), num_lineups=50)
    assert mi_face_eval.evaluator_accuracy(evaluator, faces.train_inputs,
                                           faces.train_labels) > 0.8
    calibration = mi_face_eval.calibration_images(faces.train_inputs, faces.train_labels, labels,
                                                  num_classes=40, key=jax.random.key(1))
    scores = {name: mi_face_eval.score_reconstructions(evaluator, images, labels, **kwargs)
              for name, images in calibration.items()}
    assert scores["person's mean image"].identification_rate > 0.9
    assert scores["person's mean image"].ssim == pytest.approx(1.0)
    for chance in ("blank image", "uniform noise", "mean face of everyone"):
        assert scores[chance].identification_rate <= 0.05
        assert 0.1 < scores[chance].lineup_accuracy < 0.3
    # The point: cosine similarity to the target's class means identifies a one-step
    # template of a linear model; the evaluator does not.
    step = mi_face(softmax_target.module.apply, softmax_target.params, labels, image_shape=SHAPE,
                   config=MIFaceConfig.fixed_steps(1), outputs="logits").images
    means = mi_face_eval.person_mean_images(faces.train_inputs, faces.train_labels, 40)
    flat_step, flat_means = step.reshape(40, -1), means.reshape(40, -1)
    cosine = (flat_step @ flat_means.T) / np.outer(np.linalg.norm(flat_step, axis=1),
                                                   np.linalg.norm(flat_means, axis=1))
    assert np.mean(cosine.argmax(axis=1) == labels) > 0.5
    one_step = mi_face_eval.score_reconstructions(evaluator, step, labels, **kwargs)
    assert one_step.identification_rate <= 0.1
    with pytest.raises(InvalidDataError, match="evaluator works on"):
        mi_face_eval.score_reconstructions(evaluator, step[:, :50], labels, **kwargs)
