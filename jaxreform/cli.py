"""The ``jaxreform`` command line.

Verbs (``jaxreform VERB --help`` documents each):

- ``run``: the main job: reform the data, train on clean and reformed data, measure, report.
- ``data verify``: validate a data folder and print what it holds.
- ``attack membership``: membership inference (Shokri, loss threshold, LiRA) on CIFAR-10.
- ``attack gan``: the GAN attack on collaborative learning (Hitaj et al.) on MNIST.
- ``attack mi-face``: model inversion (Fredrikson et al. 2015) on AT&T faces.
- ``attack attribute``: attribute inference (Fredrikson et al. 2014) on tabular data.
- ``privacy epsilon`` / ``privacy noise``: DP-SGD accounting (ε for a run, σ for a target ε).

Errors on bad input print one line, ``jaxreform: error: ...``, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading

from jaxreform import __version__, data, models, reformers
from jaxreform.errors import JaxreformError


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other jaxreform error."""

    def error(self, message: str):
        self.exit(2, f"jaxreform: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not widths or min(widths) <= 0:
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text!r}")
    return widths


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default unless it is None or the option is required (where
    "(default: None)" would only confuse)."""

    def _get_help_string(self, action):
        if action.default is None or action.required:
            return action.help
        return super()._get_help_string(action)


def _subcommand(actions, name: str, **texts) -> argparse.ArgumentParser:
    """Adds subcommand ``name`` (with ``help=`` and ``description=``) showing defaults."""
    return actions.add_parser(name, formatter_class=_DefaultsFormatter, **texts)


def _one_of(names) -> str:
    return "one of: " + ", ".join(sorted(names))


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", default=None,
        help=f"folder with the dataset files (default: ${data.DATA_DIR_ENV}; if unset, the "
             "small MNIST subset shipped with the package)")


def _add_run_parser(verbs) -> None:
    parser = _subcommand(verbs, "run",
        help="reform the training data, train on clean and reformed data, measure",
        description="Trains the task model on clean data and on reformed data, measures "
                    "accuracy, the relative L0/L2/L-inf change of the data and a loss-threshold "
                    "membership attack on both, and writes a report folder (report.json, "
                    "report.md, pictures).")
    parser.add_argument("--dataset", default="mnist", help=_one_of(data.LOADERS))
    parser.add_argument("--reformer", default="autoencoder",
                        help=_one_of(reformers.REFORMERS))
    parser.add_argument("--model", default="softmax",
                        help="task model, " + _one_of(models.CLASSIFIERS))
    parser.add_argument("--out", required=True, help="report folder to create")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a previous report in --out (atomically, at the end)")
    _add_data_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--num-train", type=_positive_int, default=None,
                        help="use a random subset of this many training examples")
    parser.add_argument("--num-test", type=_positive_int, default=None,
                        help="use a random subset of this many test examples")
    group = parser.add_argument_group("task model training")
    group.add_argument("--epochs", type=_positive_int, default=10,
                       help="passes over the training data")
    group.add_argument("--batch-size", type=_positive_int, default=128,
                       help="minibatch size (also used for the autoencoder)")
    group.add_argument("--learning-rate", type=_positive_float, default=1e-3,
                       help="Adam step size")
    group.add_argument("--l2", type=float, default=0.0,
                       help="L2 penalty λ/2·||θ||² in the loss")
    group = parser.add_argument_group("autoencoder reformer")
    group.add_argument("--ae-architecture", default="dense", help="dense or conv")
    group.add_argument("--ae-hidden", type=_widths, default=(512,),
                       help="hidden widths (dense) or channels (conv), e.g. 512 or 16,32")
    group.add_argument("--ae-epochs", type=_positive_int, default=5,
                       help="passes over the data when training the autoencoder")
    group.add_argument("--ae-learning-rate", type=_positive_float, default=1e-3,
                       help="Adam step size of the autoencoder")
    group = parser.add_argument_group("influence reformer")
    group.add_argument("--budget", type=_positive_float, default=0.3,
                       help="relative L2 change of every training example, ||x'-x|| / ||x||")
    group.add_argument("--noise", default="orthogonal",
                       help="orthogonal (the reformer), or the controls isotropic and along")
    group.add_argument("--per-class", action="store_true",
                       help="one influence direction per class (remove a k-dim subspace)")
    group.add_argument("--influence-l2", type=float, default=0.01,
                       help="L2 penalty of the model whose influence is computed")
    group.add_argument("--clip", action="store_true",
                       help="keep reformed inputs in [0, 1]")
    group.add_argument("--solver", default="cg", help="inverse-HVP solver: exact, cg or lissa")
    group.add_argument("--damping", type=float, default=0.0,
                       help="added to the Hessian's diagonal (needed for mlp and cnn)")
    group.add_argument("--curvature", default="hessian",
                       help="hessian, or gauss-newton (positive semi-definite; lets CG "
                            "converge on the mlp and cnn)")
    group.add_argument("--hvp-chunk-size", type=_positive_int, default=None,
                       help="examples per chunk of the solver's curvature products (bounds "
                            "memory; e.g. 500 for the cnn)")
    group.add_argument("--solver-tolerance", type=_positive_float, default=1e-4,
                       help="largest acceptable relative residual of the solve")
    group.add_argument("--cg-max-iterations", type=_positive_int, default=1000)
    group.add_argument("--lissa-scale", type=_positive_float, default=50.0,
                       help="must exceed the Hessian's largest eigenvalue")
    group.add_argument("--lissa-depth", type=_positive_int, default=5000)
    group.add_argument("--lissa-repeats", type=_positive_int, default=1)
    group.add_argument("--lissa-batch-size", type=_positive_int, default=None,
                       help="examples per LiSSA step (default: all)")
    group = parser.add_argument_group("differential privacy (DP-SGD, dp-accounting)")
    group.add_argument("--dp-epsilon", type=_positive_float, default=None,
                       help="train the task model on the (reformed) data with DP-SGD to this "
                            "epsilon (the clean reference stays non-private)")
    group.add_argument("--dp-autoencoder-epsilon", type=_positive_float, default=None,
                       help="dp-autoencoder: train the autoencoder with DP-SGD to this epsilon")
    group.add_argument("--code-noise-epsilon", type=_positive_float, default=None,
                       help="dp-autoencoder: per-record Gaussian mechanism on released codes")
    group.add_argument("--code-clip-norm", type=_positive_float, default=5.0,
                       help="dp-autoencoder: L2 clip norm of each code before noise")
    group.add_argument("--code-size", type=_positive_int, default=None,
                       help="(dp-)autoencoder, dense: code length instead of the input shape")
    group.add_argument("--dp-delta", type=_positive_float, default=1e-5,
                       help="delta of every DP guarantee (must be < 1/n)")
    group.add_argument("--dp-clip-norm", type=_positive_float, default=1.0,
                       help="per-example gradient clip norm C")
    group.add_argument("--dp-batch-size", type=_positive_int, default=256,
                       help="expected (Poisson) batch size q*n")
    group.add_argument("--dp-learning-rate", type=_positive_float, default=0.1,
                       help="SGD (momentum 0.9) step size of DP-SGD")
    group.add_argument("--accountant", default="pld", help="pld (tighter) or rdp")
    group = parser.add_argument_group("measurement")
    group.add_argument("--attack-examples", type=_positive_int, default=None,
                       help="size of each side of the membership attack: this many training "
                            "points (members) against as many test points (non-members); "
                            "default: the whole test set")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=_run)


def _run(args) -> int:
    from jaxreform import dp, influence, pipeline, train

    config = pipeline.RunConfig(
        dataset=args.dataset, data_dir=args.data_dir, reformer=args.reformer, model=args.model,
        seed=args.seed, num_train=args.num_train, num_test=args.num_test,
        classifier=train.TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                                     learning_rate=args.learning_rate, l2_penalty=args.l2),
        autoencoder_architecture=args.ae_architecture, autoencoder_hidden=args.ae_hidden,
        autoencoder_training=train.TrainConfig(epochs=args.ae_epochs,
                                               batch_size=args.batch_size,
                                               learning_rate=args.ae_learning_rate),
        influence_budget=args.budget, influence_noise=args.noise,
        influence_per_class=args.per_class, influence_l2=args.influence_l2,
        influence_clip=args.clip, influence_hvp_chunk_size=args.hvp_chunk_size,
        solver=influence.SolverConfig(
            method=args.solver, damping=args.damping, tolerance=args.solver_tolerance,
            cg_max_iterations=args.cg_max_iterations, lissa_scale=args.lissa_scale,
            lissa_depth=args.lissa_depth, lissa_repeats=args.lissa_repeats,
            lissa_batch_size=args.lissa_batch_size, curvature=args.curvature),
        num_attack_examples=args.attack_examples,
        dp_epsilon=args.dp_epsilon, dp_autoencoder_epsilon=args.dp_autoencoder_epsilon,
        code_noise_epsilon=args.code_noise_epsilon, code_clip_norm=args.code_clip_norm,
        code_size=args.code_size,
        dp_training=dp.DpSgdConfig(
            target_epsilon=1.0, delta=args.dp_delta, clip_norm=args.dp_clip_norm,
            expected_batch_size=args.dp_batch_size, learning_rate=args.dp_learning_rate,
            accountant=args.accountant),
    )
    payload = pipeline.run_main_job(config, args.out, overwrite=args.overwrite,
                                    progress=not args.quiet)
    results = payload["results"]
    print(f"clean test accuracy {results['clean']['test_accuracy']:.4f}; reformed "
          f"{results['reformed']['test_accuracy']:.4f}; report in {args.out}")
    return 0


def _add_data_parser(verbs) -> None:
    parser = verbs.add_parser("data", help="inspect and validate datasets")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = _subcommand(actions, "verify",
        help="validate a dataset's files and print its sizes",
        description="Reads every file of the dataset, checks headers, sizes and labels, and "
                    "prints a JSON summary; exits 2 naming the bad file otherwise.")
    verify.add_argument("--dataset", default="mnist", help=_one_of(data.LOADERS))
    _add_data_arguments(verify)
    verify.set_defaults(handler=_verify)


def _verify(args) -> int:
    dataset = data.load_dataset(args.dataset, args.data_dir)
    print(json.dumps(dataset.summary(), indent=2))
    print(f"jaxreform: {args.dataset} verified: {len(dataset.train_labels):,} training and "
          f"{len(dataset.test_labels):,} test examples from {dataset.source}", file=sys.stderr)
    return 0


def _add_attack_parser(verbs) -> None:
    parser = verbs.add_parser("attack", help="run a privacy attack and write a report folder")
    attacks = parser.add_subparsers(dest="attack", required=True, metavar="ATTACK")
    attribute = _subcommand(attacks, "attribute",
        help="attribute inference on tabular data (Fredrikson et al. 2014)",
        description="Trains the task model on clean and (optionally) reformed tabular data and "
                    "infers one categorical attribute of training and test records from the "
                    "deployed model, beside the prior-only baseline.")
    attribute.add_argument("--dataset", default="adult", help="adult or malware")
    attribute.add_argument("--attribute", default="marital-status",
                           help="categorical column to infer, e.g. marital-status, sex, race")
    attribute.add_argument("--reformer", default="autoencoder",
                           help="none, or a reformer to compare with: "
                                + _one_of(reformers.REFORMERS))
    attribute.add_argument("--model", default="softmax", help=_one_of(models.CLASSIFIERS))
    attribute.add_argument("--out", required=True, help="report folder to create")
    attribute.add_argument("--overwrite", action="store_true")
    _add_data_arguments(attribute)
    attribute.add_argument("--seed", type=int, default=0)
    attribute.add_argument("--epochs", type=_positive_int, default=5)
    attribute.add_argument("--num-attacked", type=_positive_int, default=5000,
                           help="records attacked on each side (train, test)")
    attribute.add_argument("--quiet", action="store_true")
    attribute.set_defaults(handler=_attack_attribute)

    inversion = _subcommand(attacks, "mi-face",
        help="MI-FACE model inversion (Fredrikson et al. 2015) on AT&T faces or MNIST",
        description="AT&T faces: trains each target on 7 images per person, inverts all 40 "
                    "people in one jitted call per stopping mode (the paper's, a confidence "
                    "target, a fixed number of steps) and scores the reconstructions with an "
                    "eigenface evaluator fitted on held-out images, beside calibration rows. "
                    "MNIST (--dataset mnist): inverts all ten digits from softmax targets "
                    "trained on clean and on reformed digits, judged by a CNN.")
    inversion.add_argument("--dataset", default="att_faces",
                           help="att_faces (the paper's targets) or mnist (the seed's defence "
                                "experiment: softmax on clean and on reformed digits)")
    inversion.add_argument("--reformer", default=None,
                           help="mnist only: comma-separated targets from none, autoencoder, "
                                "influence (default: none,autoencoder,influence)")
    inversion.add_argument("--target", action="append", default=None,
                           help="softmax, mlp or dae (the stacked denoising autoencoder, "
                                "searched in code space); repeat for several (default: "
                                "softmax)")
    inversion.add_argument("--max-steps", type=_positive_int, default=5000,
                           help="alpha: most gradient steps per label")
    inversion.add_argument("--target-confidence", type=float, default=None,
                           help="att_faces only: stop level of the confidence-target mode "
                                "(default: 0.99)")
    inversion.add_argument("--lineups", type=_positive_int, default=None,
                           help="att_faces only: five-face lineups per measurement "
                                "(default: 200)")
    inversion.add_argument("--out", required=True, help="report folder to create")
    inversion.add_argument("--overwrite", action="store_true")
    _add_data_arguments(inversion)
    inversion.add_argument("--seed", type=int, default=0)
    inversion.set_defaults(handler=_attack_mi_face)

    membership = _subcommand(
        attacks, "membership",
        help="membership inference on CIFAR-10 (Shokri et al., loss threshold, LiRA)",
        description="Trains Shokri et al.'s CIFAR-10 CNN on N of 2N candidates and K shadow "
                    "models on random halves, then attacks the target; writes per-class "
                    "precision and recall, AUC, TPR at low FPR and a log-log ROC.")
    membership.add_argument("--dataset", default="cifar10", help="cifar10")
    membership.add_argument("--method", default="all", help="all, threshold, lira or shokri")
    membership.add_argument("--reformer", default="none",
                            help="none; autoencoder: the target trains on the codes of a "
                                 "conv autoencoder fitted on its members; influence: every "
                                 "model trains on influence-orthogonal noisy images")
    membership.add_argument("--budget", type=_positive_float, default=0.3,
                            help="influence: relative L2 change of each training image")
    membership.add_argument("--autoencoder-steps", type=_positive_int, default=400,
                            help="training steps of the defence's autoencoder")
    membership.add_argument("--dp-epsilon", type=_positive_float, default=None,
                            help="train the target and every shadow with DP-SGD to this "
                                 "epsilon (lots of --batch-size, Adam at --learning-rate)")
    membership.add_argument("--dp-delta", type=_positive_float, default=1e-5)
    membership.add_argument("--dp-clip-norm", type=_positive_float, default=1.0,
                            help="per-example gradient clip norm of DP-SGD")
    membership.add_argument("--train-size", type=_positive_int, default=2500,
                            help="N: the target's members (as many non-members)")
    membership.add_argument("--shadows", type=_positive_int, default=16,
                            help="K shadow models (even)")
    membership.add_argument("--epochs", type=_positive_int, default=30)
    membership.add_argument("--batch-size", type=_positive_int, default=64)
    membership.add_argument("--learning-rate", type=_positive_float, default=1e-3)
    membership.add_argument("--features", type=_widths, default=(32, 64),
                            help="filters of the target CNN's two convolutions")
    membership.add_argument("--flip", action="store_true",
                            help="LiRA: also query mirrored images")
    membership.add_argument("--shokri-disjoint", action="store_true",
                            help="train Shokri's shadows on test-split images")
    membership.add_argument("--out", required=True, help="report folder to create")
    membership.add_argument("--overwrite", action="store_true")
    _add_data_arguments(membership)
    membership.add_argument("--seed", type=int, default=0)
    membership.set_defaults(handler=_attack_membership)
    _add_gan_parser(attacks)


def _class_sets(text: str) -> tuple[tuple[int, ...], ...]:
    try:
        sets = tuple(tuple(int(c) for c in part.split(",")) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected classes like 0,1,2,3,4/5,6,7,8,9 (one comma-separated group per "
            f"participant, groups separated by '/'), got {text!r}") from None
    return sets


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def _add_gan_parser(attacks) -> None:
    gan = _subcommand(
        attacks, "gan",
        help="GAN attack on collaborative learning (Hitaj et al. 2017) on MNIST",
        description="Participants holding disjoint digit classes train a shared model by "
                    "distributed selective SGD; the adversary trains a generator against its "
                    "copy of the shared model to produce the victim's class. Writes the judge's "
                    "victim-class rate, SSIM/MSE to the nearest victim image and the shared "
                    "model's accuracy per round, a plot and sample grids.")
    gan.add_argument("--dataset", default="mnist",
                     help="mnist, or att_faces (people are the classes; resized to 64x64)")
    gan.add_argument("--victim-class", type=int, default=3,
                     help="the class the adversary wants samples of")
    gan.add_argument("--participants", type=_class_sets, default=None,
                     help="each participant's classes: comma-separated, '/' between "
                          "participants (default: the first half of the classes, then the "
                          "second: 0,1,2,3,4/5,6,7,8,9 on MNIST)")
    gan.add_argument("--adversary", type=int, default=1, help="index of the adversary")
    gan.add_argument("--reformer", default="none",
                     help="defence: none, autoencoder (every participant trains on codes) or "
                          "influence (the victim adds influence-orthogonal noise)")
    gan.add_argument("--budget", type=_positive_float, default=0.3,
                     help="influence: relative L2 change of each of the victim's images")
    gan.add_argument("--rounds", type=_positive_int, default=30, help="upload rounds")
    gan.add_argument("--local-steps", type=_positive_int, default=20,
                     help="local SGD steps per participant and round")
    gan.add_argument("--batch-size", type=_positive_int, default=64,
                     help="examples per local step (with DP: the expected Poisson batch)")
    gan.add_argument("--learning-rate", type=_positive_float, default=0.05,
                     help="local SGD learning rate")
    gan.add_argument("--upload-fraction", type=_fraction, default=0.1,
                     help="theta_u: fraction of the largest parameter changes uploaded")
    gan.add_argument("--dp-epsilon", type=_positive_float, default=None,
                     help="record-level epsilon of each participant's uploads (DP-SGD locally)")
    gan.add_argument("--dp-delta", type=_positive_float, default=1e-5,
                     help="delta of the record-level guarantee")
    gan.add_argument("--dp-clip-norm", type=_positive_float, default=1.0,
                     help="per-example gradient clipping norm of the DP local steps")
    gan.add_argument("--generator-steps", type=_positive_int, default=50,
                     help="generator updates per round")
    gan.add_argument("--shared-model", default="mlp", help="mlp or cnn")
    gan.add_argument("--max-per-participant", type=_positive_int, default=None,
                     help="cap on each participant's training examples")
    gan.add_argument("--eval-every", type=_positive_int, default=5,
                     help="rounds between measurements of the attack")
    gan.add_argument("--judge-epochs", type=_positive_int, default=10,
                     help="epochs of the judge, the independent CNN that scores generated "
                          "samples (trained on the public half of the test split)")
    gan.add_argument("--out", required=True, help="report folder to create")
    gan.add_argument("--overwrite", action="store_true")
    _add_data_arguments(gan)
    gan.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    gan.add_argument("--quiet", action="store_true", help="no progress bars")
    gan.set_defaults(handler=_attack_gan)


def _attack_gan(args) -> int:
    from jaxreform.collab import dssgd, gan, job

    config = job.GanJobConfig(
        data_dir=args.data_dir, dataset=args.dataset, class_sets=args.participants,
        attack=gan.GanAttackConfig(victim_class=args.victim_class, adversary=args.adversary,
                                   generator_steps=args.generator_steps),
        collab=dssgd.CollabConfig(
            rounds=args.rounds, local_steps=args.local_steps, batch_size=args.batch_size,
            learning_rate=args.learning_rate, upload_fraction=args.upload_fraction,
            dp_epsilon=args.dp_epsilon, dp_delta=args.dp_delta, dp_clip_norm=args.dp_clip_norm),
        shared_model=args.shared_model, reformer=args.reformer,
        influence_budget=args.budget, max_per_participant=args.max_per_participant,
        eval_every=args.eval_every,
        judge_epochs=args.judge_epochs, seed=args.seed)
    payload = job.run_gan_job(config, args.out, overwrite=args.overwrite,
                              progress=not args.quiet)
    final = payload["final"]
    print(f"round {final['round']}: the judge assigns {100 * final['victim_rate']:.1f}% of the "
          f"generated samples to class {args.victim_class}; shared-model accuracy "
          f"{final['shared_accuracy']:.4f}")
    print(f"report in {args.out}")
    return 0


def _attack_membership(args) -> int:
    from jaxreform.attacks import membership_job
    from jaxreform.errors import ConfigError

    if args.dataset != "cifar10":
        raise ConfigError(f"attack membership supports --dataset cifar10 for now, got "
                          f"--dataset {args.dataset}.")
    config = membership_job.MembershipJobConfig(
        data_dir=args.data_dir, method=args.method, train_size=args.train_size,
        shadows=args.shadows, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, features=args.features, flip=args.flip,
        shokri_disjoint=args.shokri_disjoint, reformer=args.reformer,
        autoencoder_steps=args.autoencoder_steps, influence_budget=args.budget,
        dp_epsilon=args.dp_epsilon,
        dp_delta=args.dp_delta, dp_clip_norm=args.dp_clip_norm, seed=args.seed)
    payload = membership_job.run_membership_job(config, args.out, overwrite=args.overwrite)
    for name, metrics in payload["attacks"].items():
        print(f"{name}: AUC {metrics['auc']:.3f}, TPR at 1% FPR {metrics['tpr_at_1%_fpr']:.3f}")
    print(f"report in {args.out}")
    return 0


def _attack_mi_face(args) -> int:
    from jaxreform.attacks import mi_face_job
    from jaxreform.errors import ConfigError

    if args.dataset == "mnist":
        return _attack_mi_face_digits(args)
    if args.dataset != "att_faces":
        raise ConfigError(f"attack mi-face supports --dataset att_faces or mnist, got "
                          f"{args.dataset!r}.")
    if args.reformer is not None:
        raise ConfigError("--reformer applies to --dataset mnist (the defence experiment); "
                          "the AT&T targets are trained on clean faces.")
    config = mi_face_job.ExperimentConfig(
        data_dir=args.data_dir, targets=tuple(args.target or ["softmax"]),
        max_steps=args.max_steps,
        target_confidence=0.99 if args.target_confidence is None else args.target_confidence,
        num_lineups=200 if args.lineups is None else args.lineups, seed=args.seed)
    payload = mi_face_job.run_mi_face_job(config, args.out, overwrite=args.overwrite)
    for row in payload["rows"]:
        if row["target"] != "calibration":
            print(f"{row['target']}, {row['row']}: identification "
                  f"{row['identification_rate']:.1%}, lineup {row['lineup_accuracy']:.1%}")
    print(f"report in {args.out}")
    return 0


def _attack_mi_face_digits(args) -> int:
    from jaxreform.attacks import mi_face_digits
    from jaxreform.errors import ConfigError

    ignored = [flag for flag, value in (("--target", args.target), ("--lineups", args.lineups),
                                        ("--target-confidence", args.target_confidence))
               if value is not None]
    if ignored:
        raise ConfigError(f"{', '.join(ignored)} appl{'ies' if len(ignored) == 1 else 'y'} to "
                          "--dataset att_faces; the MNIST experiment attacks softmax targets "
                          "(choose them with --reformer) in fixed-step and paper modes.")
    reformers = tuple((args.reformer or "none,autoencoder,influence").split(","))
    config = mi_face_digits.DigitsJobConfig(data_dir=args.data_dir, reformers=reformers,
                                            max_steps=args.max_steps, seed=args.seed)
    payload = mi_face_digits.run_mi_face_digits_job(config, args.out, overwrite=args.overwrite)
    for reformer, target in payload["targets"].items():
        for mode, scores in target["modes"].items():
            print(f"{reformer}, {mode}: judge identifies {scores['identification']:.0%} of the "
                  f"digits (confidence {scores['judge confidence']:.2f})")
    print(f"report in {args.out}")
    return 0


def _attack_attribute(args) -> int:
    from jaxreform import attack_jobs, pipeline, train

    epochs = train.TrainConfig(epochs=args.epochs, batch_size=128, learning_rate=1e-3)
    run = pipeline.RunConfig(dataset=args.dataset, data_dir=args.data_dir,
                             reformer=args.reformer, model=args.model, seed=args.seed,
                             classifier=epochs, autoencoder_training=epochs,
                             autoencoder_hidden=(64,))
    config = attack_jobs.AttributeJobConfig(run=run, attribute=args.attribute,
                                            num_attacked=args.num_attacked)
    payload = attack_jobs.run_attribute_job(config, args.out, overwrite=args.overwrite,
                                            progress=not args.quiet)
    for name, result in payload["results"].items():
        train_side = result["train"]
        print(f"{name}: attack {train_side['accuracy']:.4f} vs baseline "
              f"{train_side['baseline_accuracy']:.4f} on training records")
    print(f"report in {args.out}")
    return 0


def _add_privacy_parser(verbs) -> None:
    parser = verbs.add_parser("privacy", help="DP-SGD privacy accounting (dp-accounting)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    epsilon = _subcommand(actions, "epsilon",
        help="epsilon of a DP-SGD run",
        description="Epsilon of DP-SGD with Poisson sampling rate q, noise multiplier sigma, "
                    "T steps, at delta, from dp-accounting's RDP and PLD accountants.")
    noise = _subcommand(actions, "noise",
        help="noise multiplier that reaches a target epsilon",
        description="The smallest noise multiplier sigma whose DP-SGD run reaches the target "
                    "epsilon at delta.")
    for sub in (epsilon, noise):
        sub.add_argument("--sampling-rate", type=float, required=True,
                         help="Poisson sampling rate q = expected batch / n, in (0, 1]")
        sub.add_argument("--steps", type=int, required=True, help="number of DP-SGD steps")
        sub.add_argument("--delta", type=float, default=1e-5, help="delta (< 1/n)")
        sub.add_argument("--accountant", default="both", help="pld, rdp or both")
    epsilon.add_argument("--noise", type=float, required=True, help="noise multiplier sigma")
    noise.add_argument("--epsilon", type=float, required=True, help="target epsilon")
    epsilon.set_defaults(handler=_privacy)
    noise.set_defaults(handler=_privacy)


def _privacy(args) -> int:
    from jaxreform import dp
    from jaxreform.dp import accounting

    names = accounting.ACCOUNTANTS if args.accountant == "both" else (args.accountant,)
    for name in names:
        if args.action == "epsilon":
            value = dp.dpsgd_epsilon(args.sampling_rate, args.noise, args.steps, args.delta, name)
            print(f"epsilon = {value:.4f} at delta = {args.delta:g} ({name} accountant; q = "
                  f"{args.sampling_rate:g}, sigma = {args.noise:g}, {args.steps} steps)")
        else:
            value = dp.dpsgd_noise_multiplier(args.epsilon, args.sampling_rate, args.steps,
                                              args.delta, name)
            print(f"noise multiplier sigma = {value:.4f} reaches epsilon = {args.epsilon:g} at "
                  f"delta = {args.delta:g} ({name} accountant; q = {args.sampling_rate:g}, "
                  f"{args.steps} steps)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jaxreform`` command."""
    parser = _Parser(
        prog="jaxreform",
        description="Privacy-preserving machine learning by data reformation.")
    parser.add_argument("--version", action="version", version=f"jaxreform {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _add_run_parser(verbs)
    _add_data_parser(verbs)
    _add_attack_parser(verbs)
    _add_privacy_parser(verbs)
    return parser


def exit_on_error(function, *args, **kwargs) -> int:
    """Calls ``function``; a jaxreform error or an OS error becomes one line on stderr and
    exit status 2 (as in the ``jaxreform`` command). For scripts such as the experiment
    drivers: ``sys.exit(exit_on_error(main))``."""
    try:
        function(*args, **kwargs)
    except (JaxreformError, OSError) as error:
        print(f"jaxreform: error: {error}", file=sys.stderr)
        return 2
    return 0


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so that report folders clean up as on Ctrl-C."""


def _raise_terminated(signum, frame):
    raise _Terminated()


def main(argv: list[str] | None = None) -> int:
    """Entry point: parses ``argv``, runs the verb, maps known errors to exit status 2.

    While a verb runs, SIGTERM (e.g. a batch scheduler's kill) unwinds like Ctrl-C, so an
    unfinished report folder is removed; the previous handler is restored afterwards."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        return args.handler(args)
    except (JaxreformError, OSError) as error:
        print(f"jaxreform: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxreform: interrupted; no report was written", file=sys.stderr)
        return 130
    except _Terminated:
        print("jaxreform: terminated; no report was written", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
