"""The autoencoder reformer on real MNIST digits, and the reformer registry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreform import metrics, models, reformers, train
from jaxreform.errors import ConfigError, InvalidDataError

FAST = train.TrainConfig(epochs=4, batch_size=50, learning_rate=1e-3)


@pytest.fixture(scope="module")
def fitted_dense(embedded_mnist):
    inputs = jnp.asarray(embedded_mnist.train_inputs[:2000])
    reformer = reformers.make_reformer("autoencoder", hidden_sizes=(512,), train_config=FAST)
    return inputs, reformer.fit(jax.random.key(0), inputs, None, progress=False)


def test_codes_live_in_input_space_and_change_the_data(fitted_dense):
    inputs, fitted = fitted_dense
    codes = fitted.reformed_train
    assert codes.shape == inputs.shape
    assert float(codes.min()) >= 0.0 and float(codes.max()) <= 1.0
    summary = metrics.summarize_distances(inputs, codes)
    # The seed's claim for MNIST is a mean change of at least 45% in each norm.
    for norm in ("l0", "l2", "linf"):
        assert summary[norm]["mean"] >= 0.45, (norm, summary[norm])
    assert fitted.info["code_shape"] == [28, 28, 1]
    losses = fitted.info["reconstruction_loss"]
    assert losses[-1] < losses[0]


def test_deployment_transform_is_the_encoder_used_for_training(fitted_dense):
    inputs, fitted = fitted_dense
    np.testing.assert_allclose(fitted.transform(inputs[:300]), fitted.reformed_train[:300],
                               rtol=1e-5, atol=1e-6)


def test_codes_carry_the_label_information(fitted_dense, embedded_mnist):
    inputs, fitted = fitted_dense
    labels = jnp.asarray(embedded_mnist.train_labels[:2000])
    module = models.SoftmaxRegression(num_classes=10)
    params = module.init(jax.random.key(3), inputs[:1])
    config = train.TrainConfig(epochs=5, batch_size=100, learning_rate=3e-3)
    result = train.fit(jax.random.key(4), train.cross_entropy_loss(module.apply), params,
                       (fitted.reformed_train, labels), config, progress=False)
    test_inputs = fitted.transform(jnp.asarray(embedded_mnist.test_inputs))
    accuracy = train.accuracy(module.apply, result.params, test_inputs,
                              jnp.asarray(embedded_mnist.test_labels))
    assert accuracy >= 0.75  # chance is 0.1; clean logistic regression gets ~0.85 here


def test_conv_autoencoder_reformer_runs(embedded_mnist):
    inputs = jnp.asarray(embedded_mnist.train_inputs[:300])
    reformer = reformers.make_reformer("autoencoder", architecture="conv", hidden_sizes=(4,),
                                       train_config=train.TrainConfig(epochs=1, batch_size=100))
    fitted = reformer.fit(jax.random.key(0), inputs, None, progress=False)
    assert fitted.reformed_train.shape == inputs.shape


def test_identity_reformer_changes_nothing(embedded_mnist):
    inputs = jnp.asarray(embedded_mnist.train_inputs[:10])
    fitted = reformers.make_reformer("none").fit(jax.random.key(0), inputs, None)
    np.testing.assert_array_equal(fitted.reformed_train, inputs)
    np.testing.assert_array_equal(fitted.transform(inputs), inputs)


def test_bad_reformer_requests_are_refused(embedded_mnist):
    with pytest.raises(ConfigError, match="unknown reformer 'autoencodr'; choose one of: "
                                          "autoencoder, dp-autoencoder, influence, none"):
        reformers.make_reformer("autoencodr")
    with pytest.raises(ConfigError, match="unknown autoencoder architecture 'rnn'"):
        reformers.make_reformer("autoencoder", architecture="rnn")
    reformer = reformers.make_reformer("autoencoder", train_config=FAST)
    inputs = np.array(embedded_mnist.train_inputs[:200])
    inputs[7, 0, 0, 0] = np.inf
    with pytest.raises(InvalidDataError, match="autoencoder inputs holds 1 non-finite"):
        reformer.fit(jax.random.key(0), inputs, None, progress=False)
    with pytest.raises(InvalidDataError, match=r"must lie in \[0, 1\]"):
        reformer.fit(jax.random.key(0), embedded_mnist.train_inputs[:200] * 255, None,
                     progress=False)


def test_dp_autoencoder_code_noise_matches_its_guarantee(embedded_mnist):
    from jaxreform import dp
    reformer = reformers.make_reformer("dp-autoencoder", train_config=FAST, code_size=16,
                                       code_noise_epsilon=2.0, code_clip_norm=1.5)
    inputs = jnp.asarray(embedded_mnist.train_inputs[:1000])
    fitted = reformer.fit(jax.random.key(0), inputs, progress=False)
    (guarantee,) = fitted.info["guarantees"]
    assert guarantee["epsilon"] == pytest.approx(2.0, rel=1e-3)
    sigma = dp.gaussian_mechanism_noise(2.0, 1e-5)
    assert fitted.info["code_noise_std"] == pytest.approx(2 * 1.5 * sigma)
    clean = fitted.transform(inputs)  # deployment: clipped, not noised
    assert float(jnp.max(jnp.linalg.norm(clean, axis=1))) <= 1.5 * (1 + 1e-5)
    residual = fitted.reformed_train - clean
    assert float(jnp.std(residual)) == pytest.approx(2 * 1.5 * sigma, rel=0.05)


def test_autoencoder_on_standardised_tabular_data(shared_data_dir):
    from jaxreform import data
    adult = data.load_adult(shared_data_dir)
    inputs = jnp.asarray(adult.train_inputs[:2000])
    reformer = reformers.make_reformer("autoencoder", hidden_sizes=(64,), train_config=FAST)
    fitted = reformer.fit(jax.random.key(0), inputs, progress=False)
    assert fitted.info["reconstruction_used"] == "mse"
    losses = fitted.info["reconstruction_loss"]
    assert losses[-1] < 0.5 * losses[0]  # it learns to reconstruct, linear code
    assert fitted.reformed_train.shape == inputs.shape
    assert float(jnp.min(fitted.reformed_train)) < 0.0  # unbounded code, not a sigmoid
    with pytest.raises(InvalidDataError, match="reconstruction='mse'"):
        reformers.make_reformer("autoencoder", reconstruction="bce").fit(
            jax.random.key(0), inputs, progress=False)
    with pytest.raises(ConfigError, match="needs the dense autoencoder"):
        reformers.make_reformer("autoencoder", architecture="conv", reconstruction="mse")
