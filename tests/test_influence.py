"""The influence engine: HVPs, solvers and influence scores against direct computations,
and influence against leave-one-out retraining on real MNIST."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxreform import influence, models
from jaxreform.errors import ConfigError, SolverError
from jaxreform.influence import validation


@pytest.fixture(scope="module")
def tiny_problem(embedded_mnist):
    """A non-linear MLP (about 500 parameters) on 7x7 average-pooled real digits."""
    images = jnp.asarray(embedded_mnist.train_inputs[:300])
    inputs = images.reshape(300, 7, 4, 7, 4, 1).mean(axis=(2, 4))
    labels = jnp.asarray(embedded_mnist.train_labels[:300])
    module = models.MLP(num_classes=10, hidden_sizes=(8,), activation=jnp.tanh)
    params = module.init(jax.random.key(0), inputs[:1])
    example_loss = influence.example_loss_from_apply(module.apply)
    return example_loss, params, inputs, labels


def test_hvp_matches_the_dense_hessian(tiny_problem):
    example_loss, params, inputs, labels = tiny_problem
    objective = influence.make_objective(example_loss, l2_penalty=0.01)
    hessian = influence.dense_hessian(objective, params, (inputs, labels))
    flat, _ = ravel_pytree(params)
    vector = jax.random.normal(jax.random.key(1), flat.shape)
    np.testing.assert_allclose(influence.flat_hvp(objective, params, (inputs, labels))(vector),
                               hessian @ vector, rtol=1e-4, atol=1e-5)
    for chunk_size in (100, 70):  # 300 = 3 x 100, and 4 x 70 + a remainder of 20
        chunked = influence.flat_hvp(objective, params, (inputs, labels), chunk_size=chunk_size)
        np.testing.assert_allclose(chunked(vector), hessian @ vector, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-5)


def _dense_curvature(example_loss, params, data, curvature, l2=0.01):
    product = influence.curvature_product(example_loss, l2, curvature)
    size = ravel_pytree(params)[0].shape[0]
    return influence.dense_matrix(influence.flat_matvec(product, params, data), size)


def test_gauss_newton_is_the_hessian_of_softmax_regression(tiny_problem):
    _, _, inputs, labels = tiny_problem
    module = models.SoftmaxRegression(num_classes=10)
    params = module.init(jax.random.key(2), inputs[:1])
    example_loss = influence.example_loss_from_apply(module.apply)
    objective = influence.make_objective(example_loss, l2_penalty=0.01)
    hessian = influence.dense_hessian(objective, params, (inputs, labels))
    ggn = _dense_curvature(example_loss, params, (inputs, labels), "gauss-newton")
    np.testing.assert_allclose(ggn, hessian, atol=2e-5)


def test_gauss_newton_makes_cg_converge_on_a_non_convex_model(tiny_problem):
    example_loss, params, inputs, labels = tiny_problem
    data = (inputs, labels)
    hessian = _dense_curvature(example_loss, params, data, "hessian")
    ggn = _dense_curvature(example_loss, params, data, "gauss-newton")
    np.testing.assert_allclose(ggn, ggn.T, atol=1e-5)
    # The MLP's Hessian at a random point is indefinite; its Gauss-Newton matrix is not.
    assert float(jnp.linalg.eigvalsh(hessian)[0]) < -1e-3
    assert float(jnp.linalg.eigvalsh(ggn)[0]) > -1e-5
    # Away from the tiny model's minimum they differ (the network's own curvature term).
    assert float(jnp.abs(ggn - hessian).max()) > 1e-3
    rhs = influence.reference_gradients(example_loss, params, inputs[:5], labels[:5])
    config = influence.SolverConfig(method="cg", damping=1e-3, tolerance=1e-5,
                                    curvature="gauss-newton")
    solution, report = influence.checked_inverse_hvp(None, example_loss, params, data, rhs,
                                                     config, l2_penalty=0.01)
    expected = jnp.linalg.solve(ggn + 1e-3 * jnp.eye(ggn.shape[0]), rhs)
    assert float(jnp.linalg.norm(solution - expected) / jnp.linalg.norm(expected)) < 1e-3
    exact, _ = influence.checked_inverse_hvp(
        None, example_loss, params, data, rhs,
        influence.SolverConfig(method="exact", damping=1e-3, curvature="gauss-newton"),
        l2_penalty=0.01)
    np.testing.assert_allclose(exact, expected, rtol=1e-3, atol=1e-5)
    with pytest.raises(ConfigError, match="unknown curvature"):
        influence.SolverConfig(curvature="fisher")
    with pytest.raises(ConfigError, match="needs the softmax cross-entropy"):
        influence.curvature_product(lambda p, x, y: jnp.sum(x), 0.01, "gauss-newton")


@pytest.mark.parametrize("method, tolerance", [("cg", 1e-5), ("lissa", 1e-3)])
def test_solvers_agree_with_the_exact_solve(tiny_problem, method, tolerance):
    example_loss, params, inputs, labels = tiny_problem
    rhs = influence.reference_gradients(example_loss, params, inputs[:5], labels[:5],
                                        num_classes=10)
    # The MLP is not convex: damp just enough to make H + damping·I positive definite.
    objective = influence.make_objective(example_loss, l2_penalty=0.01)
    eigenvalues = jnp.linalg.eigvalsh(influence.dense_hessian(objective, params, (inputs, labels)))
    damping = max(0.0, -float(eigenvalues[0])) + 0.1
    scale = 1.1 * (float(eigenvalues[-1]) + damping)
    exact, _ = influence.checked_inverse_hvp(
        jax.random.key(0), example_loss, params, (inputs, labels), rhs,
        influence.SolverConfig(method="exact", damping=damping), l2_penalty=0.01)
    solution, report = influence.checked_inverse_hvp(
        jax.random.key(0), example_loss, params, (inputs, labels), rhs,
        influence.SolverConfig(method=method, damping=damping, tolerance=tolerance,
                               lissa_scale=scale, lissa_depth=2000), l2_penalty=0.01)
    chex.assert_shape(solution, rhs.shape)
    assert float(report.relative_residual.max()) <= tolerance
    error = jnp.linalg.norm(solution - exact) / jnp.linalg.norm(exact)
    assert float(error) < 10 * tolerance


def test_lissa_divergence_names_the_setting(tiny_problem):
    example_loss, params, inputs, labels = tiny_problem
    rhs = influence.reference_gradients(example_loss, params, inputs[:5], labels[:5])
    config = influence.SolverConfig(method="lissa", damping=0.1, lissa_scale=0.05,
                                    lissa_depth=500)
    with pytest.raises(SolverError, match=r"LiSSA diverged .* increase lissa_scale \(now 0.05\)"
                                          r".* largest eigenvalue is about"):
        influence.checked_inverse_hvp(jax.random.key(0), example_loss, params, (inputs, labels),
                                      rhs, config, l2_penalty=0.01)


def test_cg_that_misses_its_tolerance_raises(tiny_problem):
    example_loss, params, inputs, labels = tiny_problem
    rhs = influence.reference_gradients(example_loss, params, inputs[:5], labels[:5])
    config = influence.SolverConfig(method="cg", damping=0.01, cg_max_iterations=2)
    with pytest.raises(SolverError, match=r"CG reached relative residual .* after 2 iterations"):
        influence.checked_inverse_hvp(None, example_loss, params, (inputs, labels), rhs, config,
                                      l2_penalty=0.01)
    with pytest.raises(ConfigError, match="unknown solver 'newton'"):
        influence.SolverConfig(method="newton")
    with pytest.raises(ConfigError, match="damping must be >= 0"):
        influence.SolverConfig(damping=-1.0)


def test_influence_scores_match_a_direct_computation(tiny_problem):
    example_loss, params, inputs, labels = tiny_problem
    p = ravel_pytree(params)[0].shape[0]
    s_ref = jax.random.normal(jax.random.key(3), (p,))
    up = influence.influence_on_loss(example_loss, params, inputs, labels, s_ref, chunk_size=64)
    pert = influence.influence_input_gradients(example_loss, params, inputs, labels, s_ref,
                                               chunk_size=64)
    chex.assert_shape(up, (300,))
    chex.assert_shape(pert, inputs.shape)
    for i in (0, 123, 299):  # 299 sits in the padded last chunk
        def scalar(x, i=i):
            gradient = ravel_pytree(jax.grad(example_loss)(params, x, labels[i]))[0]
            return -jnp.vdot(s_ref, gradient)
        assert float(up[i]) == pytest.approx(float(scalar(inputs[i])), rel=1e-4, abs=1e-6)
        np.testing.assert_allclose(pert[i], jax.grad(scalar)(inputs[i]), rtol=1e-4, atol=1e-6)
    several = jnp.stack([s_ref, 2 * s_ref], axis=1)
    pert_two = influence.influence_input_gradients(example_loss, params, inputs[:10],
                                                   labels[:10], several)
    chex.assert_shape(pert_two, (10, 2, 7, 7, 1))
    np.testing.assert_allclose(pert_two[:, 1], 2 * pert[:10], rtol=1e-4, atol=1e-6)


def test_per_class_reference_gradients(tiny_problem):
    example_loss, params, inputs, labels = tiny_problem
    per_class = influence.reference_gradients(example_loss, params, inputs[:50], labels[:50],
                                              num_classes=10)
    overall = influence.reference_gradients(example_loss, params, inputs[:50], labels[:50])
    counts = np.bincount(np.asarray(labels[:50]), minlength=10)
    np.testing.assert_allclose(per_class @ jnp.asarray(counts / 50.0), overall, rtol=1e-4,
                               atol=1e-6)


def test_influence_predicts_leave_one_out_retraining(embedded_mnist):
    """Koh & Liang's check at small scale: logistic regression, λ = 0.01, 2,000 real digits."""
    n, removals, l2 = 2000, 20, 0.01
    inputs = jnp.asarray(embedded_mnist.train_inputs[:n])
    labels = jnp.asarray(embedded_mnist.train_labels[:n])
    module = models.SoftmaxRegression(num_classes=10)
    example_loss = influence.example_loss_from_apply(module.apply)
    start = module.init(jax.random.key(0), inputs[:1])
    optimum = validation.newton_minimize(example_loss, start, inputs, labels, jnp.ones((1, n)),
                                         l2_penalty=l2, steps=8)
    params = jax.tree.map(lambda leaf: leaf[0], optimum.params)
    test_x = jnp.asarray(embedded_mnist.test_inputs)
    test_y = jnp.asarray(embedded_mnist.test_labels)
    test_losses = jax.vmap(example_loss, in_axes=(None, 0, 0))(params, test_x, test_y)
    t = int(jnp.argmax(test_losses))
    gradient = influence.reference_gradients(example_loss, params, test_x[t:t + 1],
                                             test_y[t:t + 1])
    s_ref, _ = influence.checked_inverse_hvp(None, example_loss, params, (inputs, labels),
                                             gradient, influence.SolverConfig(tolerance=1e-5),
                                             l2_penalty=l2)
    scores = influence.influence_on_loss(example_loss, params, inputs, labels, s_ref)
    removed = jnp.argsort(-jnp.abs(scores))[:removals]
    retrained = validation.newton_minimize(example_loss, params, inputs, labels,
                                           validation.leave_one_out_masks(n, removed),
                                           l2_penalty=l2, steps=2)
    assert float(retrained.gradient_norm.max()) < 1e-4  # really retrained to the optimum
    actual = jax.vmap(lambda p: example_loss(p, test_x[t], test_y[t]))(retrained.params) \
        - example_loss(params, test_x[t], test_y[t])
    r = validation.pearson(actual, -scores[removed] / n)
    assert r >= 0.95, r  # Koh & Liang report about 0.99; 0.997 measured here
