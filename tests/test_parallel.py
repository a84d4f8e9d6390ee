"""Data-parallel training over 8 simulated CPU devices gives the single-device result."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jaxreform import data, models, parallel, train
    assert jax.device_count() == 8, jax.devices()
    ds = data.mnist.load_embedded_mnist()
    x, y = jnp.asarray(ds.train_inputs[:1600]), jnp.asarray(ds.train_labels[:1600])
    module = models.MLP(10, hidden_sizes=(64,))
    params = module.init(jax.random.key(0), x[:1])
    config = train.TrainConfig(epochs=2, batch_size=80)
    loss = train.cross_entropy_loss(module.apply)
    single = train.fit(jax.random.key(1), loss, params, (x, y), config, progress=False)
    mesh = parallel.data_mesh()
    sharded = train.fit(jax.random.key(1), loss, params, (x, y), config, progress=False,
                        mesh=mesh)
    leaf = jax.tree.leaves(sharded.params)[0]
    assert len(leaf.sharding.device_set) == 8, leaf.sharding
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(sharded.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
    try:
        parallel.shard_examples((ds.train_inputs[:1601],), mesh)
    except ValueError as error:
        assert "cannot be split evenly over 8 devices" in str(error)
    else:
        raise AssertionError("uneven split accepted")
    print("OK")
""")


def test_sharded_training_matches_one_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("OK")
