"""Collaborative learning (DSSGD) and the GAN attack of Hitaj et al., on real MNIST digits."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreform import cli, data, models, train
from jaxreform.collab import dssgd, gan, job
from jaxreform.dp import accounting
from jaxreform.errors import ConfigError, TrainingDivergedError

SPLIT = ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))


@pytest.mark.parametrize("class_sets, adversary, victim, message", [
    (((0, 1),), None, None, "at least two participants"),
    (((0, 1), (1, 2)), None, None, "disjoint"),
    (((0, 0), (1, 2)), None, None, "lists a class twice"),
    (((0, 1), ()), None, None, "holds no class"),
    (((0, 1), (2, 10)), None, None, "outside"),
    ((SPLIT), 2, 3, "adversary must index"),
    ((SPLIT), 1, 7, "holds the victim class"),
    ((((0, 1), (2, 3))), 1, 9, "held by no participant"),
])
def test_class_sets_refuse_impossible_settings(class_sets, adversary, victim, message):
    with pytest.raises(ConfigError, match=message):
        dssgd.check_class_sets(class_sets, 10, adversary=adversary, victim_class=victim)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_upload_fraction_must_lie_in_unit_interval(fraction):
    with pytest.raises(ConfigError, match="upload_fraction"):
        dssgd.CollabConfig(upload_fraction=fraction)


def test_select_largest_keeps_exactly_the_largest_changes():
    delta = {"a": jnp.asarray([0.1, -5.0, 0.3]), "b": jnp.asarray([[2.0, -0.2], [0.0, 4.0]])}
    kept = dssgd.select_largest(delta, 3 / 7)
    np.testing.assert_array_equal(kept["a"], [0.0, -5.0, 0.0])
    np.testing.assert_array_equal(kept["b"], [[2.0, 0.0], [0.0, 4.0]])
    assert dssgd.select_largest(delta, 1.0) is delta


def test_draw_rows_are_distinct_and_inside_the_participants_data():
    rows = jax.vmap(lambda k: dssgd.draw_rows(k, jnp.int32(40), 100, 32))(
        jax.random.split(jax.random.key(0), 20))
    assert int(rows.max()) < 40
    assert all(len(set(r.tolist())) == 32 for r in np.asarray(rows))


@pytest.fixture(scope="module")
def participants(embedded_mnist):
    return dssgd.split_by_class(embedded_mnist.train_inputs, embedded_mnist.train_labels, SPLIT,
                                max_per_participant=200)


def _round_inputs(participants, config, plan, key=1):
    module = models.MLP(num_classes=11, hidden_sizes=(32,))
    shared = module.init(jax.random.key(0), participants.inputs[0, :1])
    sizes = dssgd.poisson_sizes(jax.random.key(key), participants.counts, plan,
                                config.local_steps)
    extra = jax.random.uniform(jax.random.key(2), (config.local_steps, 8, 28, 28, 1))
    extra_labels = jnp.full((config.local_steps, 8), 10, jnp.int32)
    return module, shared, sizes, extra, extra_labels


@pytest.mark.parametrize("dp_epsilon", [None, 4.0])
def test_vmap_and_loop_over_participants_agree(participants, dp_epsilon):
    config = dssgd.CollabConfig(rounds=2, local_steps=3, batch_size=16, upload_fraction=0.2,
                                dp_epsilon=dp_epsilon, dp_delta=1e-3)
    plan = dssgd.plan_local_steps(config, participants.counts)
    module, shared, sizes, extra, extra_labels = _round_inputs(participants, config, plan)
    weights = jnp.asarray([0.0, 1.0])
    results = [dssgd.make_round(module.apply, config, plan, strategy=strategy)(
        shared, jax.random.key(3), participants, sizes, extra, extra_labels, weights)
        for strategy in ("vmap", "loop")]
    for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # Each participant uploads at most ⌈θ_u · P⌉ changed entries.
    changed = sum(int(jnp.sum(new != old)) for new, old in
                  zip(jax.tree.leaves(results[0][0]), jax.tree.leaves(shared)))
    size = sum(leaf.size for leaf in jax.tree.leaves(shared))
    assert 0 < changed <= 2 * np.ceil(0.2 * size)


def test_generated_rows_only_reach_the_adversarys_update(participants):
    config = dssgd.CollabConfig(rounds=1, local_steps=2, batch_size=16, upload_fraction=1.0)
    plan = dssgd.plan_local_steps(config, participants.counts)
    module, shared, sizes, extra, extra_labels = _round_inputs(participants, config, plan)
    train_one = jax.jit(dssgd.make_local_training(module.apply, config, plan))

    def update(extra_inputs, weight):
        return train_one(shared, jax.random.key(4), participants.inputs[0],
                         participants.labels[0], participants.counts[0], sizes[0],
                         extra_inputs, extra_labels, weight)[0]

    same = jax.tree.map(jnp.allclose, update(extra, 0.0), update(extra * 0.5, 0.0))
    assert all(jax.tree.leaves(same))
    moved = jax.tree.map(jnp.allclose, update(extra, 1.0), update(extra * 0.5, 1.0))
    assert not all(jax.tree.leaves(moved))


def test_dp_rounds_with_participants_of_very_different_sizes(embedded_mnist):
    """Poisson batches of the large participant may exceed the small one's data; padding is
    bounded by the largest participant, and every drawn size fits."""
    unequal = dssgd.split_by_class(embedded_mnist.train_inputs, embedded_mnist.train_labels,
                                   ((3,), (0, 1, 2, 4, 5, 6, 7, 8, 9)))
    counts = np.asarray(unequal.counts)
    assert counts[1] > 5 * counts[0]
    config = dssgd.CollabConfig(rounds=20, local_steps=20, batch_size=int(counts[0]) - 20,
                                dp_epsilon=4.0, dp_delta=1e-4)
    plan = dssgd.plan_local_steps(config, unequal.counts)
    assert config.batch_size < plan.padded_batch <= counts.max()
    sizes = dssgd.poisson_sizes(jax.random.key(0), unequal.counts, plan, 200)
    assert int(sizes.max()) <= plan.padded_batch
    module, shared, sizes, extra, extra_labels = _round_inputs(unequal, config, plan)
    new, losses = dssgd.make_round(module.apply, config, plan, strategy="vmap")(
        shared, jax.random.key(3), unequal, sizes, extra, extra_labels, jnp.asarray([0.0, 1.0]))
    assert np.all(np.isfinite(np.asarray(losses)))


def test_dp_plan_meets_the_target_epsilon_for_every_participant(participants):
    config = dssgd.CollabConfig(rounds=10, local_steps=5, batch_size=16, dp_epsilon=2.0,
                                dp_delta=1e-3)
    plan = dssgd.plan_local_steps(config, participants.counts)
    guarantees = dssgd.dp_guarantees(config, plan)
    assert len(guarantees) == 2
    assert all(g.epsilon <= 2.0 * 1.01 for g in guarantees)
    # The participant with the fewest records sets σ, so it sits at the target.
    tightest = guarantees[int(np.argmin(np.asarray(participants.counts)))]
    assert tightest.epsilon == pytest.approx(2.0, rel=0.01)
    assert accounting.dpsgd_epsilon(max(plan.sampling_rates), plan.noise_multiplier, 50,
                                    1e-3) == pytest.approx(tightest.epsilon)
    with pytest.raises(ConfigError, match="fewer than the local batch size"):
        dssgd.plan_local_steps(dssgd.CollabConfig(batch_size=500), participants.counts)


@pytest.mark.parametrize("shape", [(28, 28, 1), (64, 64, 1), (32, 32, 3), (64,)])
def test_generators_make_the_requested_shapes_in_range(shape):
    generator = gan.generator_for(shape)
    params = generator.init(jax.random.key(0), jnp.zeros((1, 100)))
    samples = gan.sample(generator, params, jax.random.key(1), 5, 100)
    assert samples.shape == (5, *shape)
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0


def test_generator_learns_to_produce_the_victim_class_of_a_fixed_model(embedded_mnist):
    """Against a frozen classifier trained on real digits, the generator phase raises the
    classifier's probability of the victim class far above its starting value."""
    module = models.MLP(num_classes=10, hidden_sizes=(64,))
    x, y = jnp.asarray(embedded_mnist.train_inputs), jnp.asarray(embedded_mnist.train_labels)
    params = train.fit(jax.random.key(0), train.cross_entropy_loss(module.apply),
                       module.init(jax.random.key(1), x[:1]), (x, y),
                       train.TrainConfig(epochs=5, batch_size=64), progress=False).params
    config = gan.GanAttackConfig(victim_class=3, generator_steps=60)
    generator = gan.generator_for((28, 28, 1))
    gen_params = generator.init(jax.random.key(2), jnp.zeros((1, 100)))

    def victim_probability(p):
        samples = gan.sample(generator, p, jax.random.key(9), 64, 100)
        return float(jax.nn.softmax(module.apply(params, samples))[:, 3].mean())

    before = victim_probability(gen_params)
    trained, _, losses = gan.make_generator_training(generator, module.apply, config)(
        gen_params, config.optimizer().init(gen_params), params, jax.random.key(3))
    assert np.all(np.isfinite(np.asarray(losses)))
    assert victim_probability(trained) > max(0.9, before + 0.5)


def test_attack_success_separates_real_victim_digits_from_other_digits(embedded_mnist):
    x, y = jnp.asarray(embedded_mnist.train_inputs), jnp.asarray(embedded_mnist.train_labels)
    judge = models.MLP(num_classes=10, hidden_sizes=(64,))
    params = train.fit(jax.random.key(0), train.cross_entropy_loss(judge.apply),
                       judge.init(jax.random.key(1), x[:1]), (x, y),
                       train.TrainConfig(epochs=5, batch_size=64), progress=False).params
    threes = jnp.asarray(embedded_mnist.test_inputs[embedded_mnist.test_labels == 3])
    sevens = jnp.asarray(embedded_mnist.test_inputs[embedded_mnist.test_labels == 7])
    victims = x[y == 3]
    real = gan.attack_success(threes, judge.apply, params, 3, victims)
    other = gan.attack_success(sevens, judge.apply, params, 3, victims)
    assert real["victim_rate"] > 0.7 > 0.1 > other["victim_rate"]
    assert real["nearest_ssim"] > other["nearest_ssim"]
    assert real["nearest_mse"] < other["nearest_mse"]
    exact = gan.attack_success(victims[:4], judge.apply, params, 3, victims)
    assert exact["nearest_mse"] == pytest.approx(0.0, abs=1e-5)
    assert exact["nearest_ssim"] == pytest.approx(1.0, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("reformer", ["none", "autoencoder", "influence"])
def test_gan_job_writes_a_complete_report(shared_data_dir, tmp_path, reformer):
    config = job.GanJobConfig(
        data_dir=str(shared_data_dir), reformer=reformer, max_per_participant=300,
        eval_every=1, judge_epochs=3, autoencoder_epochs=2, public_size=2000,
        attack=gan.GanAttackConfig(generator_steps=5),
        collab=dssgd.CollabConfig(rounds=2, local_steps=3, dp_epsilon=8.0, dp_delta=1e-4))
    payload = job.run_gan_job(config, tmp_path / "out", progress=False)
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["final"] == payload["final"]
    assert [row["round"] for row in on_disk["history"]] == [0, 1, 2]
    for name in on_disk["files"]:
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert on_disk["data"]["participant_examples"] == [300, 300]
    assert on_disk["privacy"][0]["epsilon"] <= 8.0 * 1.01
    calibration = on_disk["calibration"]
    assert calibration["real victim images (unseen by the judge)"]["victim_rate"] > 0.7
    assert calibration["adversary's own classes"]["victim_rate"] < 0.1
    assert 0.0 <= on_disk["final"]["shared_accuracy"] <= 1.0
    assert "Calibration" in (tmp_path / "out" / "report.md").read_text()
    if reformer == "influence":  # only the victim's images move, by the budget, in pixels
        change = on_disk["defence"]["victim_distances"]["l2"]["mean"]
        assert 0.2 < change <= 0.3 + 1e-3
    grid = plt.imread(tmp_path / "out" / "samples_round_2.png")
    assert grid.size > 0
    # Only the autoencoder defence moves the collaboration into code space.
    assert ("architecture" in on_disk["defence"]) == (reformer == "autoencoder")


@pytest.mark.slow
def test_gan_job_on_att_faces_uses_people_and_an_eigenface_judge(shared_data_dir, tmp_path):
    config = job.GanJobConfig(
        data_dir=str(shared_data_dir), dataset="att_faces", eval_every=1,
        attack=gan.GanAttackConfig(victim_class=3, generator_steps=3),
        collab=dssgd.CollabConfig(rounds=1, local_steps=2, batch_size=16))
    payload = job.run_gan_job(config, tmp_path / "faces", progress=False)
    assert payload["data"]["class_sets"] == [list(range(20)), list(range(20, 40))]
    assert payload["data"]["participant_examples"] == [140, 140]
    assert "eigenface" in payload["judge"]
    # The eigenface evaluator identifies most unseen training faces (86.8% in the MI-FACE
    # suite); on the victim's own faces it beats chance (2.5%) by far, on noise it does not.
    assert payload["judge_accuracy"] > 0.8
    calibration = payload["calibration"]
    assert calibration["real victim images (unseen by the judge)"]["victim_rate"] > 0.5
    assert calibration["uniform noise"]["victim_rate"] == 0.0
    assert (tmp_path / "faces" / "samples_round_1.png").exists()
    with pytest.raises(ConfigError, match="MNIST-only|use --dataset mnist"):
        job.GanJobConfig(dataset="att_faces", reformer="autoencoder")


def test_gan_job_stops_on_diverged_local_training(tmp_path, no_data_env):
    config = job.GanJobConfig(
        max_per_participant=200, judge_epochs=1, attack=gan.GanAttackConfig(generator_steps=2),
        collab=dssgd.CollabConfig(rounds=2, local_steps=3, learning_rate=1e6))
    with pytest.raises(TrainingDivergedError, match="lower --learning-rate"):
        job.run_gan_job(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_gan_job_refuses_a_too_small_participant_before_training(tmp_path, no_data_env):
    config = job.GanJobConfig(class_sets=((0, 1), (5, 6)), attack=gan.GanAttackConfig(
        victim_class=1, adversary=1), max_per_participant=3)
    with pytest.raises(ConfigError, match="participant 0 holds 3 examples, fewer than"):
        job.run_gan_job(config, tmp_path / "out", progress=False)


@pytest.mark.parametrize("arguments, message", [
    (["--upload-fraction", "1.5"], "must lie in (0, 1]"),
    (["--participants", "0,1/x"], "expected classes like"),
    (["--victim-class", "7"], "holds the victim class"),
    (["--participants", "0,1,2/3,4", "--victim-class", "9"], "held by no participant"),
    (["--reformer", "dp-autoencoder"], "reformer for the GAN attack"),
])
def test_cli_gan_refuses_bad_settings(tmp_path, capsys, arguments, message):
    argv = ["attack", "gan", "--out", str(tmp_path / "out"), *arguments]
    try:
        status = cli.main(argv)
    except SystemExit as stop:
        status = stop.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_influence_defence_runs_on_a_victim_with_few_faces(shared_data_dir):
    # Only the autoencoder defence needs public images; the influence defence must accept
    # AT&T faces, where a victim holds fewer images than the reformer's default batch.
    config = job.GanJobConfig(dataset="att_faces", reformer="influence")
    faces = data.load_att_faces(str(shared_data_dir))
    inputs, labels = np.asarray(faces.train_inputs), np.asarray(faces.train_labels)
    victim_rows = np.flatnonzero(labels >= 35)  # 5 people, 35 images
    reformed, info = job._reform_victim(config, jax.random.key(0), inputs, labels, victim_rows,
                                        progress=False)
    others = np.setdiff1d(np.arange(len(labels)), victim_rows)
    np.testing.assert_array_equal(reformed[others], inputs[others])
    assert info["victim_distances"]["l2"]["mean"] == pytest.approx(config.influence_budget,
                                                                   rel=0.05)
