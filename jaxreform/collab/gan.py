"""The GAN attack on collaborative learning (Hitaj, Ateniese and Perez-Cruz, CCS 2017).

The adversary is an honest-looking participant. Each round, before its local training, it
trains a generator G so that its downloaded copy of the shared model (the discriminator D)
puts the *victim's* class on G's samples: ``min_G E_z[-log softmax(D(G(z)))[victim]]``. It
then labels fresh samples of G with a class of its own, the *fake class*, and mixes them into
its local training; the shared model learns to tell victim-like samples from the victim's
class, which makes the victim's next updates reveal more about it (fake-class injection).

In this module the fake class is an extra output of the shared model (index ``num_classes``),
declared by the adversary and held by no one else, as in the paper's MNIST setting. The
generator is DCGAN-style for images (a dense layer, then ×2 upsamplings with leaky ReLU and
sigmoid pixels; each upsampling is a 3×3 convolution at the *low* resolution to 4× the channels
followed by a depth-to-space shuffle, the sub-pixel convolution of Shi et al. 2016, which spans
the same functions as a stride-2 transposed convolution; the transposed convolution's kernel
gradient ran about 200 ms per step of 64 samples on XLA:CPU, nearest-neighbour resizing then a
convolution at the high resolution about 130 ms), and a two-layer dense network for code
vectors (the autoencoder defence, whose shared model reads codes). No batch normalisation, so
G is a pure function of its parameters and noise.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxreform import _validate, models
from jaxreform.attacks.mi_face_eval import ssim
from jaxreform.errors import ConfigError


def _upsamplings(height: int, width: int) -> int:
    for count in (3, 2, 1):
        if height % 2**count == 0 and width % 2**count == 0 and min(height, width) // 2**count >= 4:
            return count
    raise ConfigError(f"the generator needs an image side divisible by 2 (at least 8), got "
                      f"{height}x{width}.")


def _depth_to_space(h: jax.Array) -> jax.Array:
    """``[b, H, W, 4C] -> [b, 2H, 2W, C]``: each pixel's 4C channels become a 2×2 block."""
    b, height, width, channels = h.shape
    h = h.reshape(b, height, width, 2, 2, channels // 4)
    return h.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * height, 2 * width, channels // 4)


class ImageGenerator(nn.Module):
    """DCGAN-style generator: ``z [b, latent] -> images [b, H, W, C]`` in (0, 1).

    Attributes:
        image_shape: ``(H, W, C)``; H and W divisible by 2, 4 or 8 (28: two upsamplings from
            7×7, 64: three from 8×8).
        features: Channels of the first feature map (halved at each upsampling, at least 16).
        conv: Convolution implementation (:func:`jaxreform.models.resolve_conv`).
    """

    image_shape: tuple[int, int, int]
    features: int = 32
    conv: str = "auto"

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        height, width, channels = self.image_shape
        count = _upsamplings(height, width)
        h = nn.Dense((height >> count) * (width >> count) * self.features)(z)
        h = nn.leaky_relu(h.reshape(z.shape[0], height >> count, width >> count,
                                    self.features), 0.2)
        features = self.features
        for i in range(count):
            last = i == count - 1
            features = channels if last else max(features // 2, 16)
            h = _depth_to_space(models.conv3x3(4 * features, self.conv)(h))
            if not last:
                h = nn.leaky_relu(h, 0.2)
        return nn.sigmoid(h)


class CodeGenerator(nn.Module):
    """Dense generator of code vectors: ``z [b, latent] -> codes [b, d]``, sigmoid (bounded
    codes, as the image autoencoders' codes are) or linear."""

    code_size: int
    hidden: int = 256
    bounded: bool = True

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        h = nn.leaky_relu(nn.Dense(self.hidden)(z), 0.2)
        h = nn.Dense(self.code_size)(h)
        return nn.sigmoid(h) if self.bounded else h


def generator_for(input_shape: tuple[int, ...], *, bounded_codes: bool = True) -> nn.Module:
    """An :class:`ImageGenerator` for ``(H, W, C)`` inputs, a :class:`CodeGenerator` for
    ``(d,)`` inputs."""
    if len(input_shape) == 3:
        return ImageGenerator(tuple(int(s) for s in input_shape))
    if len(input_shape) == 1:
        return CodeGenerator(int(input_shape[0]), bounded=bounded_codes)
    raise ConfigError(f"no generator for inputs shaped {input_shape}; expected (H, W, C) "
                      "images or (d,) vectors.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GanAttackConfig:
    """The adversary's settings.

    Attributes:
        victim_class: The class whose samples the adversary wants.
        adversary: Index of the adversary among the participants.
        generator_steps: Generator updates per round (before the adversary's local training).
        generator_batch: Noise vectors per generator update.
        generator_learning_rate: Adam learning rate of G (β1 = 0.5, as in DCGAN).
        latent_size: Dimension of z.
        fake_per_step: Generated samples added to each of the adversary's local steps, labelled
            with the fake class.
        restart: Start the generator afresh when, after a round's training, D gives its
            samples a victim-class probability below a uniform guess over D's outputs (the
            generator has collapsed, typically to saturated pixels with no gradient).
    """

    victim_class: int = 3
    adversary: int = 1
    generator_steps: int = 50
    generator_batch: int = 64
    generator_learning_rate: float = 1e-3
    latent_size: int = 100
    fake_per_step: int = 32
    restart: bool = True

    def __post_init__(self):
        _validate.check_integers(victim_class=self.victim_class, adversary=self.adversary,
                                 generator_steps=self.generator_steps,
                                 generator_batch=self.generator_batch,
                                 latent_size=self.latent_size, fake_per_step=self.fake_per_step)
        _validate.check_positive(generator_steps=self.generator_steps,
                                 generator_batch=self.generator_batch,
                                 generator_learning_rate=self.generator_learning_rate,
                                 latent_size=self.latent_size, fake_per_step=self.fake_per_step)

    def optimizer(self) -> optax.GradientTransformation:
        """Adam for the generator."""
        return optax.adam(self.generator_learning_rate, b1=0.5)


def make_generator_training(generator: nn.Module, model_apply: Callable,
                            config: GanAttackConfig) -> Callable:
    """The adversary's generator phase of one round, jitted.

    Returns:
        ``train(gen_params, opt_state, shared_params, key) -> (gen_params, opt_state, [steps]
        losses)``: ``config.generator_steps`` Adam steps on ``-log p_victim(D(G(z)))`` with the
        shared model frozen as D.
    """
    optimizer = config.optimizer()

    def loss(gen_params, shared, z):
        logits = model_apply(shared, generator.apply(gen_params, z))
        return -jax.nn.log_softmax(logits)[:, config.victim_class].mean()

    @jax.jit
    def train(gen_params, opt_state, shared, key):
        def step(carry, step_key):
            params, state = carry
            z = jax.random.normal(step_key, (config.generator_batch, config.latent_size))
            value, grads = jax.value_and_grad(loss)(params, shared, z)
            updates, state = optimizer.update(grads, state, params)
            return (optax.apply_updates(params, updates), state), value

        (gen_params, opt_state), losses = jax.lax.scan(
            step, (gen_params, opt_state), jax.random.split(key, config.generator_steps))
        return gen_params, opt_state, losses

    return train


def sample(generator: nn.Module, gen_params, key: jax.Array, count: int,
           latent_size: int) -> jax.Array:
    """``[count, ...]`` samples of G."""
    return generator.apply(gen_params, jax.random.normal(key, (count, latent_size)))


def attack_success(samples: jax.Array, judge_apply: Callable, judge_params, victim_class: int,
                   victim_images: jax.Array) -> dict[str, float]:
    """How well generated images show the victim's class.

    Args:
        samples: ``[s, H, W, C]`` generated images in [0, 1].
        judge_apply: ``apply(params, x) -> logits`` of an independent classifier trained
            outside the collaboration.
        judge_params: Its parameters.
        victim_class: The attacked class.
        victim_images: ``[v, H, W, C]`` the victim's training images of that class.

    Returns:
        ``victim_rate`` (fraction the judge assigns to the victim class), ``victim_confidence``
        (mean judge probability of it), ``nearest_mse`` (mean over samples of the MSE to the
        closest victim image) and ``nearest_ssim`` (mean SSIM to that same image).
    """
    if samples.shape[1:] != victim_images.shape[1:] or not len(samples) or not len(victim_images):
        raise ConfigError(f"samples {samples.shape} and victim images {victim_images.shape} "
                          "must be non-empty with the same image shape.")
    probabilities = jax.nn.softmax(judge_apply(judge_params, samples))
    if not 0 <= victim_class < probabilities.shape[1]:
        raise ConfigError(f"victim class {victim_class} is outside the judge's "
                          f"{probabilities.shape[1]} classes.")
    flat_samples = samples.reshape(samples.shape[0], -1)
    flat_victims = victim_images.reshape(victim_images.shape[0], -1)
    distances = (jnp.sum(flat_samples**2, 1)[:, None] - 2 * flat_samples @ flat_victims.T
                 + jnp.sum(flat_victims**2, 1)[None, :]) / flat_samples.shape[1]
    nearest = jnp.argmin(distances, axis=1)
    similarity = jax.vmap(ssim)(samples, victim_images[nearest])
    return {
        "victim_rate": float(jnp.mean(jnp.argmax(probabilities, 1) == victim_class)),
        "victim_confidence": float(jnp.mean(probabilities[:, victim_class])),
        "nearest_mse": float(jnp.mean(jnp.maximum(jnp.min(distances, axis=1), 0.0))),
        "nearest_ssim": float(jnp.mean(similarity)),
    }
