"""The ``jaxreform`` command end to end on real MNIST, and its one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from jaxreform import cli, data
from jaxreform.data import mnist

SMALL = ["--num-train", "2000", "--num-test", "500", "--epochs", "3", "--ae-epochs", "2",
         "--batch-size", "50", "--quiet"]


@pytest.fixture(autouse=True, scope="module")
def _embedded_data_only():
    """These runs use the embedded subset whatever the caller's environment says."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(data.DATA_DIR_ENV, raising=False)
        yield


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One small real run on the embedded subset, shared by the checks below."""
    out = tmp_path_factory.mktemp("runs") / "report"
    status = cli.main(["run", "--dataset", "mnist", "--reformer", "autoencoder", "--out",
                       str(out), *SMALL])
    return status, out


def test_run_writes_a_complete_report(small_run):
    status, out = small_run
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "mia_scores.npz", "reformed.png", "report.json", "report.md", "roc.png", "training.png"]
    payload = json.loads((out / "report.json").read_text())
    assert payload["data"]["embedded_subset"] is True
    assert payload["data"]["num_train"] == 2000 and payload["data"]["num_test"] == 500
    assert payload["config"]["classifier"]["epochs"] == 3
    assert payload["versions"]["jax"]
    results = payload["results"]
    assert results["clean"]["test_accuracy"] >= 0.80  # ~0.85 measured; chance is 0.1
    assert results["reformed"]["test_accuracy"] >= 0.60
    assert results["distances"]["l2"]["mean"] >= 0.45
    attack = results["membership_inference"]["clean"]
    assert attack["num_members"] == attack["num_nonmembers"] == 500
    assert 0.0 <= attack["auc"] <= 1.0
    assert results["timing"]["reform_overhead"] > 0
    markdown = (out / "report.md").read_text()
    assert "a small subset" in markdown and "![original, reformed, difference]" in markdown


def test_influence_reformer_from_the_command_line(tmp_path):
    out = tmp_path / "influence"
    assert cli.main(["run", "--reformer", "influence", "--budget", "0.4", "--out", str(out),
                     *SMALL]) == 0
    payload = json.loads((out / "report.json").read_text())
    info = payload["results"]["reformer"]
    assert info["name"] == "influence" and info["noise"] == "orthogonal"
    assert info["residual_cosine_max"] < 1e-4
    assert payload["results"]["distances"]["l2"]["mean"] == pytest.approx(0.4, rel=1e-3)
    assert payload["results"]["reformed"]["test_accuracy"] >= 0.75
    assert "mean relative l2 change >= 30%" in payload["seed_comparison"]


def test_same_seed_gives_the_same_numbers(small_run, tmp_path):
    _, out = small_run
    assert cli.main(["run", "--out", str(tmp_path / "again"), *SMALL]) == 0
    first = json.loads((out / "report.json").read_text())["results"]
    again = json.loads((tmp_path / "again" / "report.json").read_text())["results"]
    for key in ("clean", "reformed"):
        assert first[key]["test_accuracy"] == again[key]["test_accuracy"]
        assert first[key]["history"]["train_loss"] == again[key]["history"]["train_loss"]
    assert first["distances"] == again["distances"]


def test_existing_report_is_refused_and_left_intact(small_run, capsys):
    _, out = small_run
    before = (out / "report.json").read_bytes()
    assert cli.main(["run", "--out", str(out), *SMALL]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("jaxreform: error: ") and "--overwrite" in error
    assert len(error.splitlines()) == 1
    assert (out / "report.json").read_bytes() == before


@pytest.mark.parametrize("arguments, message", [
    (["--dataset", "mnsit"], "unknown dataset 'mnsit'"),
    (["--reformer", "influenc"], "unknown reformer 'influenc'"),
    (["--model", "resnet"], "unknown model 'resnet'"),
    (["--data-dir", "/nonexistent/folder"], "data directory '/nonexistent/folder' (from "
                                            "--data-dir) does not exist"),
    (["--data-dir", ""], "the data directory given is an empty string"),
    (["--ae-architecture", "rnn"], "unknown autoencoder architecture 'rnn'"),
    (["--l2", "nan"], "l2_penalty must be a finite number"),
    (["--seed", "99999999999999999999999"], "seed must fit in 64 bits"),
    (["--attack-examples", "5000"], "num_attack_examples=5000 exceeds the 500 examples"),
    (["--reformer", "influence", "--budget", "1e9"], "budget must lie in (0, 10.0]"),
    (["--reformer", "influence", "--solver", "newton"], "unknown solver 'newton'"),
    (["--reformer", "none", "--dp-epsilon", "2", "--dp-delta", "0.01"], "not below 1/n"),
    (["--reformer", "autoencoder", "--code-noise-epsilon", "2"],
     "apply to --reformer dp-autoencoder only"),
    (["--reformer", "dp-autoencoder"], "dp-autoencoder needs dp_training"),
    (["--reformer", "none", "--dp-epsilon", "2", "--accountant", "moments"],
     "unknown accountant 'moments'"),
])
def test_bad_arguments_get_one_line_and_status_2(arguments, message, tmp_path, capsys):
    status = cli.main(["run", "--out", str(tmp_path / "out"), *SMALL, *arguments])
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_dp_autoencoder_reports_each_guarantee_and_what_it_covers(tmp_path):
    out = tmp_path / "dp"
    assert cli.main(["run", "--reformer", "dp-autoencoder", "--dp-autoencoder-epsilon", "4",
                     "--code-noise-epsilon", "8", "--code-size", "32", "--dp-epsilon", "4",
                     "--out", str(out), *SMALL]) == 0
    payload = json.loads((out / "report.json").read_text())
    guarantees = {g["covers"].split(" (")[0]: g for g in payload["results"]["privacy"]}
    assert set(guarantees) == {"the released encoder", "each released reformed training record",
                               "the released task model"}
    for name, target in (("the released encoder", 4.0), ("the released task model", 4.0),
                         ("each released reformed training record", 8.0)):
        assert guarantees[name]["epsilon"] == pytest.approx(target, rel=0.01)
        assert guarantees[name]["delta"] == 1e-5
    # Local noise on every code leaves little signal in 2,000 images; only sanity here (the
    # frontier experiment measures accuracy). The codes are 32 numbers, not images.
    assert 0.0 <= payload["results"]["reformed"]["test_accuracy"] <= 1.0
    assert payload["results"]["reformer"]["code_shape"] == [32]
    assert "Each bound covers only what its row names" in (out / "report.md").read_text()


def test_privacy_epsilon_and_noise_commands(capsys):
    assert cli.main(["privacy", "epsilon", "--sampling-rate", "0.01", "--noise", "4",
                     "--steps", "10000", "--delta", "1e-5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("epsilon = 1.0355 ") and "rdp" in lines[0]
    assert lines[1].startswith("epsilon = 0.947") and "pld" in lines[1]
    assert cli.main(["privacy", "noise", "--sampling-rate", "0.01", "--epsilon", "1",
                     "--steps", "10000", "--accountant", "rdp"]) == 0
    assert "sigma = 4.12" in capsys.readouterr().out
    assert cli.main(["privacy", "epsilon", "--sampling-rate", "1.5", "--noise", "4",
                     "--steps", "10"]) == 2
    assert "sampling_rate must lie in (0, 1]" in capsys.readouterr().err
    assert cli.main(["privacy", "noise", "--sampling-rate", "1", "--epsilon", "0.0001",
                     "--steps", "100000"]) == 2
    assert "no noise multiplier" in capsys.readouterr().err


def test_truncated_data_file_names_the_file(tmp_path, capsys):
    shutil.copytree(mnist.embedded_mnist_dir(), tmp_path / "mnist")
    target = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100_000])
    status = cli.main(["run", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"),
                       *SMALL])
    error = capsys.readouterr().err
    assert status == 2
    assert "train-images-idx3-ubyte.gz: gzip stream ends early" in error
    assert not (tmp_path / "out").exists()


def test_data_verify_on_the_staged_files(shared_data_dir, capsys):
    assert cli.main(["data", "verify", "--data-dir", str(shared_data_dir)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_train"] == 60000 and summary["num_test"] == 10000


def test_console_script_help_lists_the_verbs():
    result = subprocess.run([sys.executable, "-m", "jaxreform.cli", "--help"],
                            capture_output=True, text=True, check=True)
    assert "run" in result.stdout and "data" in result.stdout
    for option, value, message in (("--epochs", "0", "must be a positive integer"),
                                   ("--learning-rate", "inf", "must be a finite number > 0"),
                                   ("--ae-hidden", "abc", "expected comma-separated integers")):
        bad = subprocess.run([sys.executable, "-m", "jaxreform.cli", "run", option, value,
                              "--out", "x"], capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr
        assert bad.stderr.startswith("jaxreform: error: ") and bad.stderr.count("\n") == 1


def test_attack_attribute_writes_a_report(shared_data_dir, tmp_path):
    out = tmp_path / "attribute"
    assert cli.main(["attack", "attribute", "--dataset", "adult", "--attribute", "sex",
                     "--data-dir", str(shared_data_dir), "--epochs", "2", "--num-attacked",
                     "1000", "--out", str(out), "--quiet"]) == 0
    payload = json.loads((out / "report.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["attribute.png", "report.json",
                                                    "report.md"]
    for name in ("clean", "reformed (autoencoder)"):
        result = payload["results"][name]
        assert result["test_accuracy"] > 0.8  # ~0.85 measured; the majority class is 0.76
        for side in ("train", "test"):
            assert result[side]["num_records"] == 1000
            assert result[side]["advantage"] == pytest.approx(
                result[side]["accuracy"] - result[side]["baseline_accuracy"])


@pytest.mark.parametrize("arguments, message", [
    (["--dataset", "mnist"], "unknown dataset for attribute inference 'mnist'"),
    (["--attribute", "age"], "age"),
    (["--attribute", "favourite-colour"], "favourite-colour"),
])
def test_attack_attribute_bad_input(arguments, message, shared_data_dir, tmp_path, capsys):
    status = cli.main(["attack", "attribute", "--data-dir", str(shared_data_dir), "--out",
                       str(tmp_path / "out"), "--quiet", *arguments])
    error = capsys.readouterr().err.strip()
    assert status == 2 and message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_attack_mi_face_writes_a_report(shared_data_dir, tmp_path, capsys):
    out = tmp_path / "mi-face"
    assert cli.main(["attack", "mi-face", "--data-dir", str(shared_data_dir), "--max-steps",
                     "30", "--lineups", "20", "--out", str(out)]) == 0
    payload = json.loads((out / "report.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["reconstructions.png", "report.json",
                                                    "report.md"]
    assert payload["files"] == ["report.json", "report.md", "reconstructions.png"]
    rows = {(r["target"], r["row"]): r for r in payload["rows"]}
    # The person's mean image is the upper calibration bound; noise sits near chance (2.5%).
    upper = next(r for (t, name), r in rows.items() if t == "calibration" and "mean" in name
                 and "everyone" not in name)
    assert upper["identification_rate"] > 0.9
    assert ("softmax", "fixed 30 steps") in rows
    assert rows[("softmax", "fixed 30 steps")]["mean_steps"] == 30
    assert cli.main(["attack", "mi-face", "--dataset", "cifar10", "--out",
                     str(tmp_path / "x")]) == 2
    assert "att_faces or mnist" in capsys.readouterr().err
    assert cli.main(["attack", "mi-face", "--reformer", "autoencoder", "--data-dir",
                     str(shared_data_dir), "--out", str(tmp_path / "x")]) == 2
    assert "--reformer applies to --dataset mnist" in capsys.readouterr().err


@pytest.mark.slow
def test_attack_mi_face_on_clean_and_reformed_digits(tmp_path, no_data_env):
    """The seed's defence experiment on the embedded MNIST subset, with a short search."""
    out = tmp_path / "digits"
    assert cli.main(["attack", "mi-face", "--dataset", "mnist", "--max-steps", "100",
                     "--out", str(out)]) == 0
    payload = json.loads((out / "report.json").read_text())
    assert set(payload["targets"]) == {"none", "autoencoder", "influence"}
    # The class means are what the judge should recognise; blank images are not digits.
    assert payload["calibration"]["class-mean images"]["identification"] >= 0.8
    assert payload["calibration"]["blank image"]["identification"] <= 0.2
    for target in payload["targets"].values():
        assert target["test_accuracy"] > 0.8
        assert target["modes"]["fixed 100 steps"]["mean steps"] == 100
        assert target["modes"]["one gradient step"]["mean steps"] == 1
    assert (out / "reconstructions.png").stat().st_size > 0
    for arguments in (["--reformer", "gan"], ["--reformer", "none,none"], ["--lineups", "5"],
                      ["--target", "dae"]):
        assert cli.main(["attack", "mi-face", "--dataset", "mnist", *arguments,
                         "--out", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_attack_membership_writes_a_report(shared_data_dir, tmp_path, capsys):
    out = tmp_path / "membership"
    assert cli.main(["attack", "membership", "--data-dir", str(shared_data_dir),
                     "--train-size", "50", "--shadows", "8", "--epochs", "2", "--batch-size", "25",
                     "--features",
                     "4,8", "--method", "lira", "--out", str(out)]) == 0
    payload = json.loads((out / "report.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md", "roc.png"]
    assert len(payload["attacks"]) == 4 and all("lira" in name for name in payload["attacks"])
    for metrics in payload["attacks"].values():
        assert 0.0 <= metrics["auc"] <= 1.0 and len(metrics["class_precision"]) == 10
    for arguments, message in ((["--shadows", "3"], "shadows must be even"),
                               (["--reformer", "gan"],
                                "unknown reformer for membership inference 'gan'"),
                               (["--method", "gan"], "unknown membership method 'gan'"),
                               (["--train-size", "40000"], "needs 80000 candidates")):
        assert cli.main(["attack", "membership", "--data-dir", str(shared_data_dir), "--out",
                         str(tmp_path / "bad"), *arguments]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
    # The autoencoder defence: target and shadows train on codes of an encoder fitted on the
    # target's members; the report says so and measures how much the members changed.
    defended = tmp_path / "defended"
    assert cli.main(["attack", "membership", "--data-dir", str(shared_data_dir),
                     "--train-size", "50", "--shadows", "2", "--epochs", "2", "--batch-size", "25",
                     "--features", "4,8", "--method", "threshold", "--reformer", "autoencoder",
                     "--autoencoder-steps", "2", "--out", str(defended)]) == 0
    payload = json.loads((defended / "report.json").read_text())
    assert payload["defence"]["reformer"] == "autoencoder"
    assert payload["defence"]["member_distances"]["l2"]["mean"] > 0.0
    assert "Defence:" in (defended / "report.md").read_text()


def test_attack_membership_with_a_dp_sgd_target(shared_data_dir, tmp_path, capsys):
    # DP-SGD defence: the target and every shadow train with DP-SGD; the report states the
    # guarantee the accountant gives for the target's members.
    private = tmp_path / "dp"
    arguments = ["attack", "membership", "--data-dir", str(shared_data_dir), "--train-size",
                 "50", "--shadows", "2", "--epochs", "2", "--batch-size", "25", "--features",
                 "4,8", "--method", "threshold", "--dp-epsilon", "8"]
    assert cli.main([*arguments, "--out", str(private)]) == 0
    payload = json.loads((private / "report.json").read_text())
    guarantee = payload["defence"]["dp"]
    assert guarantee["epsilon"] == pytest.approx(8.0, rel=0.02)
    assert guarantee["delta"] == 1e-5 and guarantee["noise_multiplier"] > 0.1
    assert guarantee["sampling_rate"] == pytest.approx(0.5) and guarantee["steps"] == 4
    assert "DP-SGD, (ε = 8" in (private / "report.md").read_text()
    # A delta of at least 1/N protects nobody: refused before any training, no report.
    assert cli.main([*arguments, "--dp-delta", "0.05", "--out", str(tmp_path / "bad")]) == 2
    assert "delta" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_sigterm_during_a_run_leaves_no_partial_report(tmp_path):
    """A batch scheduler's SIGTERM unwinds like Ctrl-C: exit 143 and no staging folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "JAXREFORM_DATA_DIR"}
    process = subprocess.Popen(
        [sys.executable, "-m", "jaxreform.cli", "run", "--dataset", "mnist", "--reformer",
         "autoencoder", "--epochs", "50", "--out", str(out)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".run.staging") for p in tmp_path.iterdir()):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "terminated; no report was written" in stderr
    assert list(tmp_path.iterdir()) == []
