"""Models, the training loop and stacked (vmapped) training, on the real MNIST subset."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreform import models, train
from jaxreform.errors import ConfigError

INPUT_SHAPE = (28, 28, 1)


@pytest.mark.parametrize("name", sorted(models.CLASSIFIERS))
def test_classifiers_give_logits_and_jit_matches_eager(name, embedded_mnist):
    module = models.CLASSIFIERS[name](num_classes=10)
    x = jnp.asarray(embedded_mnist.train_inputs[:4])
    params = module.init(jax.random.key(0), x)
    logits = module.apply(params, x)
    chex.assert_shape(logits, (4, 10))
    chex.assert_tree_all_finite(logits)
    np.testing.assert_allclose(jax.jit(module.apply)(params, x), logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(models.AUTOENCODERS))
def test_autoencoder_codes_keep_the_input_shape(name, embedded_mnist):
    module = models.AUTOENCODERS[name](input_shape=INPUT_SHAPE)
    x = jnp.asarray(embedded_mnist.train_inputs[:3])
    params = module.init(jax.random.key(1), x)
    code = module.apply(params, x, method="encode")
    chex.assert_shape(code, x.shape)
    assert float(code.min()) > 0.0 and float(code.max()) < 1.0
    chex.assert_shape(module.apply(params, code, method="decode"), x.shape)


def test_stacked_parameters_apply_with_vmap(embedded_mnist):
    module = models.MLP(num_classes=10, hidden_sizes=(32,))
    x = jnp.asarray(embedded_mnist.train_inputs[:5])
    keys = jax.random.split(jax.random.key(2), 3)
    stacked = jax.vmap(module.init, in_axes=(0, None))(keys, x)
    logits = jax.vmap(module.apply, in_axes=(0, None))(stacked, x)
    chex.assert_shape(logits, (3, 5, 10))
    for i in range(3):
        single = module.apply(jax.tree.map(lambda leaf: leaf[i], stacked), x)
        np.testing.assert_allclose(logits[i], single, rtol=1e-5, atol=1e-6)


def _softmax_setup(dataset, count):
    module = models.SoftmaxRegression(num_classes=10)
    x = jnp.asarray(dataset.train_inputs[:count])
    y = jnp.asarray(dataset.train_labels[:count])
    return module, module.init(jax.random.key(0), x[:1]), x, y


def test_softmax_regression_learns_real_digits(embedded_mnist):
    module, params, x, y = _softmax_setup(embedded_mnist, 6000)
    config = train.TrainConfig(epochs=3, batch_size=100, learning_rate=3e-3)
    result = train.fit(jax.random.key(1), train.cross_entropy_loss(module.apply), params, (x, y),
                       config, progress=False)
    test_accuracy = train.accuracy(module.apply, result.params,
                                   jnp.asarray(embedded_mnist.test_inputs),
                                   jnp.asarray(embedded_mnist.test_labels))
    # Logistic regression reaches ~0.87 on this subset; chance is 0.1.
    assert test_accuracy >= 0.84
    losses = result.history["train_loss"]
    assert len(losses) == 3 and losses[2] < losses[0]


def test_training_is_deterministic_by_key(embedded_mnist):
    module, params, x, y = _softmax_setup(embedded_mnist, 1000)
    config = train.TrainConfig(epochs=1, batch_size=100)
    loss_fn = train.cross_entropy_loss(module.apply)
    first = train.fit(jax.random.key(5), loss_fn, params, (x, y), config, progress=False)
    again = train.fit(jax.random.key(5), loss_fn, params, (x, y), config, progress=False)
    other = train.fit(jax.random.key(6), loss_fn, params, (x, y), config, progress=False)
    chex.assert_trees_all_equal(first.params, again.params)
    with pytest.raises(AssertionError):
        chex.assert_trees_all_close(first.params, other.params)


def test_vmapped_epochs_train_many_models_as_one(embedded_mnist):
    module, params, x, y = _softmax_setup(embedded_mnist, 1000)
    optimizer = train.TrainConfig(learning_rate=1e-2).make_optimizer()
    epoch = train.make_epoch_fn(train.cross_entropy_loss(module.apply), optimizer, 100)
    keys = jax.random.split(jax.random.key(7), 4)
    stacked = jax.tree.map(lambda leaf: jnp.stack([leaf] * 4), params)
    states = jax.vmap(optimizer.init)(stacked)
    new_params, _, losses = jax.jit(jax.vmap(epoch, in_axes=(0, 0, 0, None)))(
        stacked, states, keys, (x, y))
    chex.assert_shape(losses, (4,))
    for i in (0, 3):
        alone, _, loss = jax.jit(epoch)(params, optimizer.init(params), keys[i], (x, y))
        chex.assert_trees_all_close(jax.tree.map(lambda leaf: leaf[i], new_params), alone,
                                    rtol=1e-4, atol=1e-5)
        assert float(losses[i]) == pytest.approx(float(loss), rel=1e-4)


def test_l2_penalty_is_half_lambda_times_squared_norm():
    params = {"w": jnp.array([3.0, 4.0]), "b": jnp.array([1.0])}
    loss = train.cross_entropy_loss(lambda p, x: jnp.zeros((x.shape[0], 2)), l2_penalty=0.1)
    value = loss(params, (jnp.zeros((1, 2)), jnp.array([0])))
    assert float(value) == pytest.approx(np.log(2) + 0.05 * 26, rel=1e-6)


def test_batched_apply_handles_a_ragged_last_chunk():
    x = jnp.arange(23.0).reshape(23, 1)
    np.testing.assert_array_equal(train.batched_apply(lambda b: 2 * b, x, batch_size=5), 2 * x)


def test_bad_training_settings_are_refused(embedded_mnist):
    with pytest.raises(ConfigError, match="epochs must be > 0, got epochs=0"):
        train.TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="unknown optimizer 'adamw'"):
        train.TrainConfig(optimizer="adamw")
    module, params, x, y = _softmax_setup(embedded_mnist, 50)
    with pytest.raises(ConfigError, match="50 examples is fewer than batch_size=128"):
        train.fit(jax.random.key(0), train.cross_entropy_loss(module.apply), params, (x, y),
                  train.TrainConfig(), progress=False)


def test_diverging_training_stops_with_advice(embedded_mnist):
    module, params, x, y = _softmax_setup(embedded_mnist, 200)
    config = train.TrainConfig(epochs=3, batch_size=100, optimizer="sgd", learning_rate=1e30)
    with pytest.raises(RuntimeError, match="lower learning_rate"):
        train.fit(jax.random.key(0), train.cross_entropy_loss(module.apply), params,
                  (x * 1e10, y), config, progress=False)


@pytest.mark.parametrize("module_class", [models.SmallCNN, models.ConvAutoencoder])
def test_patch_convolution_matches_the_xla_convolution(module_class, embedded_mnist):
    x = jnp.asarray(embedded_mnist.train_inputs[:4])
    make = ((lambda conv: module_class(10, features=(4, 6), conv=conv))
            if module_class is models.SmallCNN
            else (lambda conv: module_class((28, 28, 1), features=(3,), conv=conv)))
    params = make("xla").init(jax.random.key(0), x[:1])
    patched = make("patches")
    # Same parameter tree, same outputs and gradients.
    assert jax.tree.structure(patched.init(jax.random.key(0), x[:1])) == jax.tree.structure(
        params)
    np.testing.assert_allclose(patched.apply(params, x), make("xla").apply(params, x),
                               rtol=1e-4, atol=1e-5)
    grads = [jax.grad(lambda p, m=m: jnp.sum(m.apply(p, x) ** 2))(params)
             for m in (make("xla"), patched)]
    for a, b in zip(*map(jax.tree.leaves, grads)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    with pytest.raises(ConfigError, match="unknown conv implementation"):
        make("winograd").init(jax.random.key(0), x[:1])
