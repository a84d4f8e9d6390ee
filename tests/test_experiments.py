"""Reduced versions of the experiments/ drivers, run on small real subsets."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import REPO_ROOT


def _load_driver(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_autoencoder_table_on_every_dataset_reduced(shared_data_dir, tmp_path):
    driver = _load_driver("autoencoder_all_datasets")
    datasets = list(driver.DATASETS)
    rows = driver.main(["--data-dir", str(shared_data_dir), "--out", str(tmp_path),
                        "--datasets", ",".join(datasets), "--num-train", "600",
                        "--num-test", "300", "--epochs", "5", "--image-epochs", "0",
                        "--quiet"])
    table = json.loads((tmp_path / "table.json").read_text())
    assert [row[0] for row in rows] == datasets == [row[0] for row in table["rows"]]
    columns = table["columns"]
    for row in table["rows"]:
        values = dict(zip(columns, row))
        assert values["train / test"] == "600 / 300"
        # Every dataset is learnt well above chance (softmax regression on 600 CIFAR-10
        # images: about 0.28 against 0.10).
        floor = 0.2 if values["dataset"] == "cifar10" else 0.5
        assert floor < values["clean accuracy"] <= 1.0
        assert values["L2 change"] > 0 and values["reform overhead"] > 0
    assert (tmp_path / "table.md").exists()
    # A resumed run reads every row back from the report folders without training again;
    # a changed setting (more epochs) is not mistaken for the earlier run.
    again = driver.main(["--data-dir", str(shared_data_dir), "--out", str(tmp_path),
                         "--datasets", ",".join(datasets), "--num-train", "600",
                         "--num-test", "300", "--epochs", "5", "--image-epochs", "0",
                         "--quiet", "--resume"])
    assert again == rows
    assert json.loads((tmp_path / "table.json").read_text())["reused"] == datasets
    config = driver.dataset_config("adult", driver.argparse.Namespace(
        data_dir=str(shared_data_dir), seed=0, num_train=600, num_test=300, epochs=6,
        image_epochs=3, image_autoencoder="conv"))
    assert driver.report.matching_report(tmp_path / "adult", config) is None
