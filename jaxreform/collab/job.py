"""The GAN-attack job behind ``jaxreform attack gan`` (MNIST; AT&T faces at 64×64).

Setting (Hitaj et al.'s MNIST case): the training split is divided by class between the
participants (default: participant 0 holds digits 0-4, participant 1, the adversary, 5-9);
the shared model has one output per digit plus the adversary's fake class; they train it
by distributed selective SGD (:mod:`jaxreform.collab.dssgd`) while the adversary runs the GAN
attack (:mod:`jaxreform.collab.gan`) against the victim class.

Measuring the attack without people looking at pictures: the MNIST *test* split is cut in two.
The first part is public: an independent classifier (the judge, a small CNN) is trained on it,
outside the collaboration; the second part measures the judge's and the shared model's
accuracy. Every ``eval_every`` rounds, 64 samples of G (fixed noise) are scored: the judge's
rate of assigning them to the victim class and its mean confidence, and the MSE and SSIM to the
nearest victim training image. Calibration printed beside it: the judge's victim rate on real
held-out victim images (what success looks like), on uniform noise, and on the adversary's own
digits (what failure looks like); round 0 is the untrained generator.

Defences:

- ``dp_epsilon``: record-level DP-SGD for every participant's local steps (see
  :mod:`jaxreform.collab.dssgd`).
- ``reformer="autoencoder"``: every participant trains on the codes of one dense
  autoencoder's encoder, fitted on the public part (so the encoder never saw a participant's
  record, though it saw public digits of every class); the decoder is discarded. The shared
  model reads codes, so the adversary's generator makes codes. To judge them the adversary
  fits its *own* decoder (the public encoder frozen) on its own data, which never includes
  the victim class, and decodes the generated codes; that is the strongest use an insider
  can make of what it holds, and it is what the judge sees.
- ``reformer="influence"``: only the victim reforms its data, adding noise orthogonal to each
  image's influence direction (the influence reformer, on a softmax model of the victim's own
  classes) at ``influence_budget``; the input space is unchanged, so nothing else changes.

AT&T faces (the paper's second case): people are the classes (default: participant 0 holds
people 0-19, the adversary 20-39), images are resized to 64×64, and the judge is the MI-FACE
suite's eigenface evaluator fitted on the 3 test images per person (see :class:`_Judge`). The
autoencoder defence is MNIST-only (faces leave too few public images to fit an encoder).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxreform import _validate, data, models, parallel, plots, report, train
from jaxreform.collab import dssgd, gan
from jaxreform.errors import ConfigError, TrainingDivergedError
from jaxreform.attacks.mi_face_eval import fit_face_evaluator
from jaxreform.metrics import summarize_distances
from jaxreform.reformers import autoencoder as ae
from jaxreform.reformers import make_reformer

DATASETS = ("mnist", "att_faces")
NUM_CLASSES = {"mnist": 10, "att_faces": 40}
FACE_SIZE = 64  # AT&T faces are resized to 64×64, as in Hitaj et al.
REFORMERS = ("none", "autoencoder", "influence")
SHARED_MODELS = ("mlp", "cnn")
EVAL_SAMPLES = 64
CALIBRATION = 500
# A mean cross-entropy this high (probability e^-50 on the true class) only comes from
# diverged training.
DIVERGED_LOSS = 50.0
MAX_VICTIM_REFERENCES = 2000


@dataclasses.dataclass(frozen=True, kw_only=True)
class GanJobConfig:
    """Settings of one GAN-attack run.

    Attributes:
        data_dir: Folder holding the dataset (None: ``$JAXREFORM_DATA_DIR``).
        dataset: ``"mnist"`` or ``"att_faces"`` (resized to 64×64; classes are people).
        class_sets: The classes of each participant (disjoint); None: the first half of the
            classes for participant 0, the second half for participant 1.
        attack: The adversary (who it is, the victim class, the generator's settings).
        collab: Rounds, local steps, θ_u and optional DP of the collaboration.
        shared_model: ``"mlp"`` (one hidden layer of ``hidden`` units) or ``"cnn"``.
        hidden: Hidden width of the MLP shared model.
        reformer: ``"none"``, ``"autoencoder"`` or ``"influence"`` (see the module
            docstring).
        influence_budget: Relative L2 change of each of the victim's images (influence).
        code_size: Code size of the autoencoder defence.
        autoencoder_epochs: Epochs of the defence's autoencoder and of the adversary's decoder.
        judge_epochs: Epochs of the judge.
        max_per_participant: Cap on each participant's examples (None: all of its classes).
        public_size: Test-split images that are public (judge, autoencoder); the rest
            measure accuracy. None: the first half.
        eval_every: Rounds between measurements (the last round is always measured).
        seed: The seed of every random choice.
    """

    data_dir: str | None = None
    dataset: str = "mnist"
    class_sets: tuple[tuple[int, ...], ...] | None = None
    attack: gan.GanAttackConfig = gan.GanAttackConfig()
    collab: dssgd.CollabConfig = dssgd.CollabConfig()
    shared_model: str = "mlp"
    hidden: int = 256
    reformer: str = "none"
    influence_budget: float = 0.3
    code_size: int = 64
    autoencoder_epochs: int = 10
    judge_epochs: int = 10
    max_per_participant: int | None = None
    public_size: int | None = None
    eval_every: int = 5
    seed: int = 0

    def __post_init__(self):
        _validate.check_choice("dataset for the GAN attack", self.dataset, DATASETS)
        _validate.check_choice("reformer for the GAN attack", self.reformer, REFORMERS)
        _validate.check_choice("shared model", self.shared_model, SHARED_MODELS)
        sizes = dict(hidden=self.hidden, code_size=self.code_size, eval_every=self.eval_every,
                     autoencoder_epochs=self.autoencoder_epochs,
                     judge_epochs=self.judge_epochs)
        _validate.check_integers(**sizes)
        _validate.check_positive(**sizes)
        _validate.check_positive(influence_budget=self.influence_budget)
        if self.public_size is not None:
            _validate.check_integers(public_size=self.public_size)
            _validate.check_positive(public_size=self.public_size)
        if self.max_per_participant is not None:
            _validate.check_integers(max_per_participant=self.max_per_participant)
            _validate.check_positive(max_per_participant=self.max_per_participant)
        if self.dataset == "att_faces" and self.reformer == "autoencoder":
            raise ConfigError("the autoencoder defence needs public images to fit the encoder; "
                              "AT&T faces have too few (use --dataset mnist).")
        dssgd.check_class_sets(self.participant_classes, NUM_CLASSES[self.dataset],
                               adversary=self.attack.adversary,
                               victim_class=self.attack.victim_class)

    @property
    def participant_classes(self) -> tuple[tuple[int, ...], ...]:
        """``class_sets``, or the default halves of the dataset's classes."""
        if self.class_sets is not None:
            return self.class_sets
        half = NUM_CLASSES[self.dataset] // 2
        return (tuple(range(half)), tuple(range(half, 2 * half)))


class _Defence:
    """What the shared model reads (identity or the public encoder) and how the adversary
    turns generated inputs back into images for the judge."""

    def __init__(self, config: GanJobConfig, key, public_images, adversary_images, progress):
        self.info: dict = {"reformer": config.reformer}
        if config.reformer != "autoencoder":  # the influence defence changes only the victim
            self.encode = lambda images: images
            self.to_images = lambda samples: samples
            return
        reformer = ae.AutoencoderReformer(
            architecture="dense", hidden_sizes=(512,), code_size=config.code_size,
            train_config=train.TrainConfig(epochs=config.autoencoder_epochs, batch_size=128,
                                           learning_rate=1e-3))
        fitted = reformer.fit(jax.random.fold_in(key, 0), public_images, progress=progress)
        self.encode = fitted.transform
        autoencoder, encoder_params = fitted.autoencoder, fitted.encoder_params
        # The adversary's own decoder: start from a fresh autoencoder, put the public encoder
        # in, and fit only the decoder on its own digits (the encoder gets zero gradients).
        codes = fitted.transform(adversary_images)
        fresh = autoencoder.init(jax.random.fold_in(key, 1), adversary_images[:1])
        encoder_only = {name: value for name, value in encoder_params["params"].items()
                        if name.startswith("encoder") or name == "code_layer"}
        start = {"params": {**fresh["params"], **encoder_only}}
        decode_loss = ae.example_reconstruction_loss("bce")

        def loss(params, batch):
            batch_codes, batch_images = batch
            outputs = autoencoder.apply(params, batch_codes, method="decode")
            return decode_loss(outputs, batch_images).mean()

        decoder = train.fit(jax.random.fold_in(key, 2), loss, start, (codes, adversary_images),
                            train.TrainConfig(epochs=config.autoencoder_epochs, batch_size=128,
                                              learning_rate=1e-3),
                            progress=progress, description="adversary's decoder").params
        shape = adversary_images.shape[1:]
        self.to_images = lambda samples: jax.nn.sigmoid(
            autoencoder.apply(decoder, samples, method="decode")).reshape(-1, *shape)
        self.info.update(reformer.describe())


def _reform_victim(config: GanJobConfig, key, inputs, labels, victim_rows, progress):
    """The victim's rows replaced by the influence reformer's output (noise orthogonal to
    each image's influence direction, at ``influence_budget``, clipped to [0, 1]); the other
    participants' data are left as they are. Returns (inputs, defence info)."""
    # A victim may hold fewer images than the reformer's default batch (AT&T faces: 7 per
    # person), so the batch is capped by the rows its influence model trains on.
    num_fit = len(victim_rows) - max(1, round(0.1 * len(victim_rows)))
    reformer = make_reformer("influence", budget=config.influence_budget, clip=(0.0, 1.0),
                             validation_fraction=0.1,
                             train_config=train.TrainConfig(epochs=10,
                                                            batch_size=min(128, num_fit)))
    fitted = reformer.fit(key, inputs[victim_rows], labels[victim_rows], progress=progress)
    reformed = np.array(inputs, copy=True)
    reformed[victim_rows] = np.asarray(fitted.reformed_train)
    info = {"reformer": "influence", "reformed": "the victim's data only",
            "budget": config.influence_budget,
            "victim_distances": summarize_distances(inputs[victim_rows],
                                                    reformed[victim_rows])}
    return reformed, info


def _shared_module(config: GanJobConfig, num_outputs: int):
    if config.shared_model == "cnn":
        return models.SmallCNN(num_classes=num_outputs)
    return models.MLP(num_classes=num_outputs, hidden_sizes=(config.hidden,))


def run(config: GanJobConfig, out: Path, *, progress: bool = True) -> dict:
    """Runs the job and writes ``report.json``, ``report.md``, ``attack.png`` and sample grids
    (``samples_round_R.png``) into ``out``."""
    start_time = time.perf_counter()
    key = jax.random.key(config.seed)
    dataset = data.LOADERS[config.dataset](config.data_dir)
    if config.dataset == "att_faces":
        dataset = _resized(dataset, FACE_SIZE)
    num_classes = dataset.num_classes
    attack, collab = config.attack, config.collab
    class_sets = dssgd.check_class_sets(config.participant_classes, num_classes,
                                        adversary=attack.adversary,
                                        victim_class=attack.victim_class)
    # Everything that can be refused is checked before the judge is trained (minutes).
    rows = dssgd.participant_rows(dataset.train_labels, class_sets,
                                  max_per_participant=config.max_per_participant)
    victim_holder = next(i for i, classes in enumerate(class_sets)
                         if attack.victim_class in classes)
    victim_rows = rows[victim_holder][dataset.train_labels[rows[victim_holder]]
                                      == attack.victim_class]
    if victim_rows.size == 0:
        raise ConfigError(f"participant {victim_holder} holds no training example of victim "
                          f"class {attack.victim_class}; the attack has nothing to recover.")
    plan = dssgd.plan_local_steps(collab, [len(r) for r in rows])

    judge_start = time.perf_counter()
    judge = _Judge(config, dataset, key, progress)
    judge_seconds = time.perf_counter() - judge_start
    public, heldout = judge.public, judge.heldout

    defence = _Defence(config, jax.random.fold_in(key, 2), public[0],
                       jnp.asarray(dataset.train_inputs[rows[attack.adversary]]), progress)
    train_inputs = np.asarray(defence.encode(jnp.asarray(dataset.train_inputs)))
    if config.reformer == "influence":
        train_inputs, defence.info = _reform_victim(config, jax.random.fold_in(key, 7),
                                                    train_inputs, dataset.train_labels,
                                                    rows[victim_holder], progress)
    participants = dssgd.split_by_class(train_inputs, dataset.train_labels, class_sets,
                                        max_per_participant=config.max_per_participant)
    # The references are the victim's own images of the class (what the attack could leak).
    victim_images = jnp.asarray(dataset.train_inputs[victim_rows[:MAX_VICTIM_REFERENCES]])
    heldout_model_inputs = defence.encode(heldout[0])

    fake_class = num_classes
    module = _shared_module(config, num_classes + 1)
    shared = module.init(jax.random.fold_in(key, 3), participants.inputs[0, :1])
    strategy = parallel.choose_strategy(shared)
    round_fn = dssgd.make_round(module.apply, collab, plan, strategy=strategy)

    generator = gan.generator_for(participants.inputs.shape[2:])
    gen_params = generator.init(jax.random.fold_in(key, 4),
                                jnp.zeros((1, attack.latent_size)))
    gen_state = attack.optimizer().init(gen_params)
    train_generator = gan.make_generator_training(generator, module.apply, attack)
    eval_noise_key = jax.random.fold_in(key, 5)
    extra_weights = jnp.zeros(len(class_sets)).at[attack.adversary].set(1.0)
    fake_labels = jnp.full((collab.local_steps, attack.fake_per_step), fake_class, jnp.int32)

    @jax.jit
    def shared_accuracy(params):
        logits = module.apply(params, heldout_model_inputs)[:, :num_classes]
        return jnp.mean(jnp.argmax(logits, 1) == heldout[1])

    def measure(round_index: int, gen_params, shared_params) -> dict:
        samples = gan.sample(generator, gen_params, eval_noise_key, EVAL_SAMPLES,
                             attack.latent_size)
        images = defence.to_images(samples)
        shared_probability = jax.nn.softmax(module.apply(shared_params, samples))
        row = {"round": round_index, "shared_accuracy": float(shared_accuracy(shared_params)),
               "shared_victim_confidence": float(
                   shared_probability[:, attack.victim_class].mean()),
               **gan.attack_success(images, judge.apply, judge.params, attack.victim_class,
                                    victim_images)}
        return row, images

    history, grids = [], {}
    grid_rounds = {0, max(1, collab.rounds // 2), collab.rounds}
    row, images = measure(0, gen_params, shared)
    history.append(row)
    grids[0] = np.asarray(images)
    round_seconds = []
    restarts, restart_level = 0, float(np.log(num_classes + 1))
    bar = tqdm(range(1, collab.rounds + 1), desc="GAN attack rounds", disable=not progress)
    for round_index in bar:
        round_key = jax.random.fold_in(key, 100 + round_index)
        tick = time.perf_counter()
        gen_params, gen_state, gen_losses = train_generator(
            gen_params, gen_state, shared, jax.random.fold_in(round_key, 0))
        if attack.restart and float(gen_losses[-1]) > restart_level:
            # A generator that D rates below a uniform guess has usually saturated (e.g. all
            # pixels black, zero gradients); a real adversary would start it afresh.
            restarts += 1
            gen_params = generator.init(jax.random.fold_in(round_key, 4),
                                        jnp.zeros((1, attack.latent_size)))
            gen_params, gen_state, gen_losses = train_generator(
                gen_params, attack.optimizer().init(gen_params), shared,
                jax.random.fold_in(round_key, 5))
        fakes = gan.sample(generator, gen_params, jax.random.fold_in(round_key, 1),
                           collab.local_steps * attack.fake_per_step, attack.latent_size)
        fakes = fakes.reshape(collab.local_steps, attack.fake_per_step, *fakes.shape[1:])
        sizes = dssgd.poisson_sizes(jax.random.fold_in(round_key, 2), participants.counts,
                                    plan, collab.local_steps)
        shared, losses = round_fn(shared, jax.random.fold_in(round_key, 3), participants,
                                  sizes, fakes, fake_labels, extra_weights)
        losses = np.asarray(losses)
        round_seconds.append(time.perf_counter() - tick)
        if not (np.all(np.isfinite(losses)) and np.all(np.isfinite(np.asarray(gen_losses)))
                and np.all(losses < DIVERGED_LOSS)):
            raise TrainingDivergedError(
                f"round {round_index}: local training diverged (mean local cross-entropy per "
                f"participant {losses.tolist()}; above {DIVERGED_LOSS:g} nats or not finite); "
                "lower --learning-rate (CollabConfig.learning_rate), or for a non-finite "
                "generator loss GanAttackConfig.generator_learning_rate.")
        if round_index % config.eval_every == 0 or round_index == collab.rounds:
            row, images = measure(round_index, gen_params, shared)
            row["local_losses"] = losses.tolist()
            row["generator_loss"] = float(np.asarray(gen_losses)[-1])
            row["generator_restarts"] = restarts
            history.append(row)
            bar.set_postfix(victim_rate=row["victim_rate"], accuracy=row["shared_accuracy"])
            if round_index in grid_rounds:
                grids[round_index] = np.asarray(images)

    calibration = judge.calibration(dataset, class_sets, attack, victim_images,
                                    jax.random.fold_in(key, 6))
    files = ["report.json", "report.md", "attack.png"]
    for round_index, images in grids.items():
        name = f"samples_round_{round_index}.png"
        plots.image_grid(images[:32], out / name, title=f"generated samples, round "
                         f"{round_index} (victim class {attack.victim_class})")
        files.append(name)
    plots.attack_rounds({config.reformer if collab.dp_epsilon is None
                         else f"{config.reformer}, DP ε={collab.dp_epsilon:g}": history},
                        out / "attack.png")
    payload = {
        "jaxreform_report": 1, "command": "attack gan",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "config": dataclasses.asdict(config), "data": {
            "name": dataset.name, "source": dataset.source,
            "class_sets": [list(classes) for classes in class_sets],
            "participant_examples": np.asarray(participants.counts).tolist(),
            "public": int(len(public[1])), "heldout": int(len(heldout[1]))},
        "versions": report.package_versions(),
        "defence": defence.info,
        "privacy": [g.as_dict() for g in dssgd.dp_guarantees(collab, plan)],
        "judge": judge.description, "judge_accuracy": judge.accuracy,
        "judge_seconds": judge_seconds,
        "calibration": calibration,
        "strategy": strategy, "seconds_per_round": float(np.median(round_seconds)),
        "seconds": time.perf_counter() - start_time,
        "history": history, "final": history[-1],
        "files": files,
    }
    report.write_json(out / report.REPORT_JSON, payload)
    (out / report.REPORT_MD).write_text(render_markdown(payload), encoding="utf-8")
    return payload


def _resized(dataset: data.Dataset, size: int) -> data.Dataset:
    """The dataset with every image resized to ``size × size`` (bilinear)."""
    def resize(images):
        shape = (images.shape[0], size, size, images.shape[-1])
        return np.asarray(jax.image.resize(jnp.asarray(images), shape, "linear"))

    return dataclasses.replace(dataset, train_inputs=resize(dataset.train_inputs),
                               test_inputs=resize(dataset.test_inputs))


class _Judge:
    """The independent classifier that scores generated samples, and the data splits it
    implies.

    MNIST: a small CNN trained on the public half of the test split; the other half measures
    the judge's and the shared model's accuracy; the calibration's real images are held-out
    test digits. AT&T faces (3 test images per person): the eigenface evaluator of the MI-FACE
    suite (:func:`~jaxreform.attacks.mi_face_eval.fit_face_evaluator`) fitted on the test
    split, as logits of negative squared distances to each person's centroid; its accuracy is
    measured on the training split, which it never saw, and the calibration's real images are
    the victim's own training images.
    """

    def __init__(self, config: GanJobConfig, dataset: data.Dataset, key, progress: bool):
        test = (jnp.asarray(dataset.test_inputs), jnp.asarray(dataset.test_labels))
        if config.dataset == "att_faces":
            evaluator = fit_face_evaluator(dataset.test_inputs, dataset.test_labels,
                                           num_classes=dataset.num_classes,
                                           num_components=min(40, len(dataset.test_labels) - 1))
            self.apply, self.params = _eigenface_logits, {
                "mean": jnp.asarray(evaluator.mean),
                "components": jnp.asarray(evaluator.components),
                "centroids": jnp.asarray(evaluator.centroids)}
            self.public = self.heldout = test
            self.description = "eigenface nearest-centroid evaluator fitted on the test split"
            self.accuracy = train.accuracy(self.apply, self.params,
                                           jnp.asarray(dataset.train_inputs),
                                           jnp.asarray(dataset.train_labels))
            self.real = (jnp.asarray(dataset.train_inputs), jnp.asarray(dataset.train_labels))
            return
        public_size = config.public_size or len(dataset.test_labels) // 2
        if public_size >= len(dataset.test_labels):
            raise ConfigError(f"public_size={public_size} leaves no held-out test image "
                              f"(the test split has {len(dataset.test_labels)}).")
        self.public = (test[0][:public_size], test[1][:public_size])
        self.heldout = (test[0][public_size:], test[1][public_size:])
        # A convolutional judge: generated samples are optimised against a dense shared
        # model, and adversarial patterns transfer most readily to a judge of the same family.
        module = models.SmallCNN(num_classes=dataset.num_classes)
        self.apply = module.apply
        self.params = train.fit_classifier(
            jax.random.fold_in(key, 1), module, *self.public,
            train.TrainConfig(epochs=config.judge_epochs, batch_size=128, learning_rate=1e-3),
            progress=progress, description="judge")
        self.description = (f"small CNN trained on the first {public_size} test-split images, "
                            f"{config.judge_epochs} epochs")
        self.accuracy = train.accuracy(self.apply, self.params, *self.heldout)
        self.real = self.heldout

    def calibration(self, dataset, class_sets, attack, victim_images, key) -> dict:
        """The judge's scores on references: real victim images the judge never saw
        (success), uniform noise and the adversary's own classes (failure)."""
        images, labels = self.real
        labels = np.asarray(labels)
        shape = victim_images.shape[1:]
        references = {
            "real victim images (unseen by the judge)":
                images[labels == attack.victim_class][:CALIBRATION],
            "uniform noise": jax.random.uniform(key, (CALIBRATION, *shape)),
            "adversary's own classes":
                images[np.isin(labels, class_sets[attack.adversary])][:CALIBRATION],
        }
        return {name: gan.attack_success(refs, self.apply, self.params, attack.victim_class,
                                          victim_images)
                for name, refs in references.items()}


def _eigenface_logits(params, images):
    flat = images.reshape(images.shape[0], -1) - params["mean"]
    features = flat @ params["components"]
    return -jnp.sum((features[:, None, :] - params["centroids"][None]) ** 2, axis=-1)


def run_gan_job(config: GanJobConfig, out_dir, *, overwrite: bool = False,
                progress: bool = True) -> dict:
    """:func:`run` inside an atomic report folder (see :mod:`jaxreform.report`)."""
    with report.report_folder(out_dir, overwrite=overwrite) as staging:
        return run(config, staging, progress=progress)


SCORES = ("victim_rate", "victim_confidence", "nearest_ssim", "nearest_mse")


def render_markdown(payload: dict) -> str:
    """``report.md``: setting, calibration, per-round scores, pictures."""
    config, final = payload["config"], payload["final"]
    attack, collab = config["attack"], config["collab"]
    lines = [
        f"# jaxreform attack gan: {config['dataset']}, victim class {attack['victim_class']}",
        "",
        "Participants: " + "; ".join(
            f"{i} holds {', '.join(map(str, classes))} ({count} examples)" for i, (classes, count)
            in enumerate(zip(payload["data"]["class_sets"],
                             payload["data"]["participant_examples"])))
        + f". The adversary is participant "
        f"{attack['adversary']}. {collab['rounds']} rounds of {collab['local_steps']} local "
        f"steps, θ_u = {collab['upload_fraction']}, shared model {config['shared_model']} "
        f"({payload['strategy']} over participants, {payload['seconds_per_round']:.2f} s per "
        f"round), defence: reformer {config['reformer']}"
        + (f", DP ε = {collab['dp_epsilon']}" if collab["dp_epsilon"] is not None else "")
        + f". {payload['seconds']:.0f} s in all ({payload['judge_seconds']:.0f} s training the "
        "judge).", "",
        f"**Final round:** the judge assigns {100 * final['victim_rate']:.1f}% of the generated "
        f"samples to the victim class (chance {100 / NUM_CLASSES[config['dataset']]:.1f}%); "
        "shared-model accuracy "
        f"{final['shared_accuracy']:.4f}. The judge ({payload['judge']}, outside the "
        f"collaboration) has accuracy {payload['judge_accuracy']:.4f} on images it never saw.",
        "",
        "## Calibration of the measures", "",
        report.markdown_table(["reference", *SCORES],
                              [[name, *(scores[k] for k in SCORES)]
                               for name, scores in payload["calibration"].items()]),
        "", "## Per round", "",
        report.markdown_table(["round", "shared accuracy", *SCORES],
                              [[row["round"], row["shared_accuracy"], *(row[k] for k in SCORES)]
                               for row in payload["history"]]),
        "", "![attack against round](attack.png)", "",
    ]
    for guarantee in payload["privacy"]:
        lines.append(f"- DP: ε = {guarantee['epsilon']}, δ = {guarantee['delta']} for "
                     f"{guarantee['covers']} ({guarantee['mechanism']}).")
    lines += ["", *(f"![{name}]({name})" for name in payload["files"]
                    if name.startswith("samples_round_")), ""]
    return "\n".join(lines)
