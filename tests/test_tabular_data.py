"""UCI Adult and ClaMP malware: real counts, training-only statistics, bad files named by place."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from jaxreform import data
from jaxreform.data import adult, malware
from jaxreform.errors import ConfigError, DataDirError, DataFileError

ADULT_CONTINUOUS = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss",
                    "hours-per-week")


@pytest.fixture(scope="module")
def adult_data(shared_data_dir):
    """The full Adult dataset and its encoding, read once for this module."""
    return adult.load_adult_with_encoding(shared_data_dir)


@pytest.fixture(scope="module")
def malware_data(shared_data_dir):
    """Both ClaMP variants with the default split (seed 0, 20% test), with their encodings."""
    return {variant: malware.load_malware_with_encoding(shared_data_dir, variant=variant)
            for variant in malware.VARIANTS}


def _one_hot_rows(block: np.ndarray) -> bool:
    return bool(np.all((block == 0) | (block == 1)) and np.all(block.sum(axis=1) == 1))


# ---------------------------------------------------------------------------------------------
# Adult on the real files


def test_adult_counts_match_the_manifest(adult_data):
    dataset, encoding = adult_data
    assert dataset.train_inputs.shape == (32561, 108) and dataset.test_inputs.shape == (16281, 108)
    assert dataset.train_inputs.dtype == np.float32 and dataset.train_labels.dtype == np.int32
    assert dataset.num_classes == 2 and encoding.label_values == ("<=50K", ">50K")
    # MANIFEST.md: >50K is 7,841 of 32,561 (24.08 %) and 3,846 of 16,281 (23.62 %).
    assert np.bincount(dataset.train_labels).tolist() == [24720, 7841]
    assert np.bincount(dataset.test_labels).tolist() == [12435, 3846]
    assert dataset.train_labels.mean() == pytest.approx(0.2408, abs=5e-5)
    assert encoding.column_names[:3] == ("age", "workclass", "fnlwgt")
    assert len(encoding.feature_names()) == encoding.num_features == 108


def test_adult_missing_values_are_their_own_category(adult_data):
    dataset, encoding = adult_data
    # MANIFEST.md: 2,399 training and 1,221 test records hold a '?'.
    for inputs, expected in ((dataset.train_inputs, 2399), (dataset.test_inputs, 1221)):
        missing = np.zeros(len(inputs), dtype=bool)
        for name in ("workclass", "occupation", "native-country"):
            column = encoding.categorical(name)
            assert column.categories[-1] == adult.MISSING
            missing |= inputs[:, column.slice.stop - 1] == 1
        assert int(missing.sum()) == expected
    assert adult.MISSING not in encoding.categorical("sex").categories


def test_adult_first_record_and_one_hot_blocks(adult_data):
    dataset, encoding = adult_data
    first = dataset.train_inputs[0]  # 39, State-gov, 77516, Bachelors, 13, Never-married, ...
    age = encoding.column("age")
    assert first[age.index] * age.std + age.mean == pytest.approx(39.0, abs=1e-4)
    names = encoding.feature_names()
    hot = {names[i] for i in np.flatnonzero(first == 1.0)}
    assert {"workclass=State-gov", "education=Bachelors", "marital-status=Never-married",
            "sex=Male", "native-country=United-States"} <= hot
    for column in encoding.columns:
        if isinstance(column, adult.CategoricalColumn):
            assert _one_hot_rows(dataset.train_inputs[:, column.slice]), column.name
            assert _one_hot_rows(dataset.test_inputs[:, column.slice]), column.name
            assert sum(column.counts) == 32561


def _raw_continuous(path, skip_first_line: bool) -> np.ndarray:
    lines = path.read_text().splitlines()[1 if skip_first_line else 0:]
    rows = [line.split(", ") for line in lines if line.strip()]
    indices = [0, 2, 4, 10, 11, 12]  # the six continuous columns of adult.names
    return np.array([[float(row[i]) for i in indices] for row in rows])


def test_adult_standardisation_uses_training_statistics_only(adult_data, shared_data_dir):
    dataset, encoding = adult_data
    train_raw = _raw_continuous(shared_data_dir / "adult" / "adult.data", False)
    test_raw = _raw_continuous(shared_data_dir / "adult" / "adult.test", True)
    for j, name in enumerate(ADULT_CONTINUOUS):
        column = encoding.column(name)
        assert column.mean == pytest.approx(train_raw[:, j].mean(), rel=1e-12)
        assert column.std == pytest.approx(train_raw[:, j].std(), rel=1e-12)
        assert dataset.train_inputs[:, column.index].mean() == pytest.approx(0.0, abs=1e-5)
        assert dataset.train_inputs[:, column.index].std() == pytest.approx(1.0, abs=1e-4)
        expected = (test_raw[:, j] - train_raw[:, j].mean()) / train_raw[:, j].std()
        np.testing.assert_allclose(dataset.test_inputs[:, column.index], expected, rtol=1e-5,
                                   atol=1e-5)
    # The test split's own statistics differ, so they were not used.
    age = dataset.test_inputs[:, encoding.column("age").index]
    assert abs(float(age.mean())) > 1e-3


def test_adult_without_data_dir_says_how_to_give_one(no_data_env):
    with pytest.raises(DataDirError, match=r"--data-dir.*JAXREFORM_DATA_DIR"):
        adult.load_adult()


def test_adult_folder_without_the_files_is_named(tmp_path):
    (tmp_path / "adult").mkdir()
    (tmp_path / "adult" / "adult.data").write_text("")
    with pytest.raises(DataDirError, match=r"missing adult\.test, adult\.names"):
        adult.load_adult(tmp_path)


def test_adult_encoding_lookups_name_the_choices(adult_data):
    _, encoding = adult_data
    with pytest.raises(ConfigError, match="no column 'income'.*marital-status"):
        encoding.column("income")
    with pytest.raises(ConfigError, match="'age' is continuous.*workclass"):
        encoding.categorical("age")


# ---------------------------------------------------------------------------------------------
# Adult: damaged copies, each error naming file, line and column


@pytest.fixture
def adult_copy(tmp_path, shared_data_dir):
    """A writable small Adult folder: the real names file, the first 400 training records and
    the first 100 test records whose categories those 400 show (after the comment line)."""
    source = shared_data_dir / "adult"
    folder = tmp_path / "adult"
    folder.mkdir()
    shutil.copy(source / "adult.names", folder / "adult.names")
    train = source.joinpath("adult.data").read_text().splitlines()[:400]
    seen = {field for line in train for field in line.split(", ")}
    test = source.joinpath("adult.test").read_text().splitlines()
    known = [line for line in test[1:] if set(line.split(", ")[:-1]) <= seen]
    (folder / "adult.data").write_text("\n".join(train) + "\n")
    (folder / "adult.test").write_text("\n".join(test[:1] + known[:100]) + "\n")
    return folder


def _edit_line(path, number: int, edit) -> None:
    lines = path.read_text().split("\n")
    lines[number - 1] = edit(lines[number - 1])
    path.write_text("\n".join(lines))


def test_adult_small_copy_loads(adult_copy):
    dataset = adult.load_adult(adult_copy.parent)
    assert dataset.train_inputs.shape[0] == 400 and dataset.test_inputs.shape[0] == 100


@pytest.mark.parametrize("file, line, edit, pattern", [
    ("adult.data", 3, lambda s: s.rsplit(",", 1)[0],
     r"adult\.data: line 3, column 15 \(income\): missing; the record has 14 fields"),
    ("adult.data", 5, lambda s: s + ", 7",
     r"adult\.data: line 5, column 16: extra field '7'"),
    ("adult.data", 2, lambda s: "forty" + s[2:],
     r"adult\.data: line 2, column 1 \(age\): 'forty' is not a number"),
    ("adult.data", 3, lambda s: s.replace("215646", "?"),
     r"adult\.data: line 3, column 3 \(fnlwgt\): value is missing \('\?'\) in a numeric column"),
    ("adult.data", 6, lambda s: s.replace(" Private,", " Pirate,"),
     r"adult\.data: line 6, column 2 \(workclass\): 'Pirate' is not a category"),
    ("adult.data", 7, lambda s: s.replace("<=50K", "maybe"),
     r"adult\.data: line 7, column 15 \(income\): unknown label 'maybe'"),
    ("adult.test", 10, lambda s: s.replace("<=50K.", "<=50K!").replace(">50K.", ">50K!"),
     r"adult\.test: line 10, column 15 \(income\): unknown label"),
    ("adult.test", 2, lambda s: s.replace("United-States", "Holand-Netherlands"),
     r"adult\.test: line 2, column 14 \(native-country\): category 'Holand-Netherlands' never "
     r"occurs in the training split"),
    ("adult.names", 97, lambda s: "age continuous.",
     r"adult\.names: line 97: expected 'name: continuous\.'"),
])
def test_adult_bad_cells_are_named_by_file_line_and_column(adult_copy, file, line, edit, pattern):
    _edit_line(adult_copy / file, line, edit)
    with pytest.raises(DataFileError, match=pattern):
        adult.load_adult(adult_copy.parent)


def test_adult_truncated_and_empty_files_are_refused(adult_copy):
    raw = (adult_copy / "adult.data").read_bytes()
    (adult_copy / "adult.data").write_bytes(raw[: raw.index(b"\n", 5000) - 20])
    with pytest.raises(DataFileError, match=r"adult\.data: line \d+, column \d+ \(\S+\): missing"):
        adult.load_adult(adult_copy.parent)
    (adult_copy / "adult.data").write_text("")
    with pytest.raises(DataFileError, match=r"adult\.data: holds no records"):
        adult.load_adult(adult_copy.parent)
    (adult_copy / "adult.names").write_text("| only a comment\n")
    with pytest.raises(DataFileError, match=r"adult\.names: declares no attributes"):
        adult.load_adult(adult_copy.parent)


def test_adult_binary_garbage_is_refused(adult_copy):
    (adult_copy / "adult.test").write_bytes(b"|1x3 Cross validator\n\xff\xfe\x00garbage\n")
    with pytest.raises(DataFileError, match=r"adult\.test: line 2: not UTF-8 text"):
        adult.load_adult(adult_copy.parent)


# ---------------------------------------------------------------------------------------------
# ClaMP malware on the real files


def test_malware_rows_and_duplicates_match_the_manifest(shared_data_dir):
    # MANIFEST.md: Raw 5,184 rows with 624 exact duplicates; Integrated 5,210 rows with 3.
    # Integrated also has 15 rows equal to an earlier one at float32 precision; they go too.
    expected = {"raw": (5184, 4560, 4560, [2501, 2683], [2488, 2072]),
                "integrated": (5210, 5207, 5192, [2488, 2722], [2488, 2704])}
    for variant, (rows, distinct, unique, labels, unique_labels) in expected.items():
        table = malware.read_malware_csv(malware.find_malware_file(shared_data_dir, variant))
        kept = malware.first_occurrences(table)
        classes = malware.parse_labels(table, "class", malware.MALWARE_LABELS)
        assert (len(table), len(set(table.cells)), len(kept)) == (rows, distinct, unique)
        assert np.bincount(classes).tolist() == labels
        assert np.bincount(classes[kept]).tolist() == unique_labels


def test_malware_splits_have_the_stated_sizes_and_columns(malware_data):
    raw, raw_encoding = malware_data["raw"]
    assert (len(raw.train_labels), len(raw.test_labels)) == (3648, 912)
    assert raw.input_shape == (53,) and not {"e_res", "e_res2"} & set(raw_encoding.column_names)
    integrated, encoding = malware_data["integrated"]
    assert (len(integrated.train_labels), len(integrated.test_labels)) == (4154, 1038)
    packer = encoding.categorical("packer_type")
    assert packer.categories[0] == "NoPacker" and packer.categories[-1] == malware.OTHER
    assert min(packer.counts[:-1]) >= malware.MIN_PACKER_COUNT
    assert sum(packer.counts) == 4154
    assert integrated.input_shape == (68 + packer.size,)
    assert _one_hot_rows(integrated.test_inputs[:, packer.slice])


def test_malware_no_record_is_both_member_and_non_member(malware_data):
    for dataset, _ in malware_data.values():
        train = {row.tobytes() + bytes([label]) for row, label in
                 zip(dataset.train_inputs, dataset.train_labels)}
        test = {row.tobytes() + bytes([label]) for row, label in
                zip(dataset.test_inputs, dataset.test_labels)}
        assert len(train) == len(dataset.train_labels) and not train & test


def test_malware_standardisation_uses_training_statistics_only(malware_data):
    dataset, encoding = malware_data["raw"]
    for column in encoding.columns:
        values = dataset.train_inputs[:, column.index]
        assert abs(values.mean()) < 1e-4
        assert values.std() == pytest.approx(1.0, abs=1e-3) or values.std() == 0.0
    # The test split is encoded with the training mean and std of log1p(x), not its own.
    size = encoding.column("SizeOfCode")
    assert size.log_scaled and size.mean > 0
    test_column = dataset.test_inputs[:, size.index]
    assert abs(float(test_column.mean())) > 1e-3
    restored = np.expm1(test_column.astype(np.float64) * size.std + size.mean)
    assert np.all(np.abs(restored - np.round(restored)) < 1e-2 * np.maximum(1, restored))


def test_malware_split_is_deterministic_by_seed(shared_data_dir):
    first = malware.load_malware(shared_data_dir, variant="raw", seed=3)
    again = malware.load_malware(shared_data_dir, variant="raw", seed=3)
    other = malware.load_malware(shared_data_dir, variant="raw", seed=4)
    np.testing.assert_array_equal(first.train_inputs, again.train_inputs)
    np.testing.assert_array_equal(first.test_labels, again.test_labels)
    assert first.test_inputs.shape == other.test_inputs.shape
    assert not np.array_equal(first.test_inputs, other.test_inputs)
    assert "624 duplicate rows dropped; split seed 3" in first.source
    train, test = malware.split_rows(3, 10, 0.3)
    assert len(test) == 3 and sorted(np.concatenate([train, test]).tolist()) == list(range(10))


def test_malware_settings_are_checked(shared_data_dir, no_data_env):
    with pytest.raises(ConfigError, match="unknown malware variant 'cooked'"):
        malware.load_malware(shared_data_dir, variant="cooked")
    with pytest.raises(ConfigError, match="test_fraction"):
        malware.load_malware(shared_data_dir, test_fraction=1.0)
    with pytest.raises(DataDirError, match=r"--data-dir.*JAXREFORM_DATA_DIR"):
        malware.load_malware()


# ---------------------------------------------------------------------------------------------
# ClaMP: damaged copies


@pytest.fixture
def integrated_copy(tmp_path, shared_data_dir):
    """A writable small Integrated CSV (header + 300 rows), in ``tmp_path/malware``."""
    folder = tmp_path / "malware"
    folder.mkdir()
    source = malware.find_malware_file(shared_data_dir, "integrated")
    lines = source.read_text().split("\n")[:301]
    path = folder / malware.VARIANTS["integrated"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("line, edit, pattern", [
    (5, lambda s: s.rsplit(",", 1)[0], r"line 5, column 70 \(class\): missing; the record has 69"),
    (6, lambda s: s + ",3", r"line 6, column 71: extra field '3'"),
    (7, lambda s: "abc," + s.split(",", 1)[1],
     r"line 7, column 1 \(e_cblp\): 'abc' is not a number"),
    (8, lambda s: "," + s.split(",", 1)[1], r"line 8, column 1 \(e_cblp\): value is empty"),
    (9, lambda s: s[:-1] + "2", r"line 9, column 70 \(class\): unknown label '2'"),
    (1, lambda s: s.replace(",class", ",label"), r"line 1: the header has no 'class'"),
])
def test_malware_bad_cells_are_named_by_file_line_and_column(integrated_copy, line, edit, pattern):
    _edit_line(integrated_copy, line, edit)
    with pytest.raises(DataFileError, match=re.escape(integrated_copy.name) + ": " + pattern):
        malware.load_malware(integrated_copy.parent.parent, test_fraction=0.5)


def test_malware_empty_and_header_only_files_are_refused(integrated_copy):
    header = integrated_copy.read_text().split("\n")[0]
    integrated_copy.write_text(header + "\r\n\r\n")
    with pytest.raises(DataFileError, match="holds a header but no records"):
        malware.load_malware(integrated_copy.parent)
    integrated_copy.write_text("")
    with pytest.raises(DataFileError, match="holds no header row"):
        malware.load_malware(integrated_copy.parent)


def test_malware_unseen_packer_in_test_split_goes_to_other(integrated_copy):
    column = integrated_copy.read_text().split("\n")[0].split(",").index("packer_type")
    lines = integrated_copy.read_text().split("\n")
    for number in range(1, 301):  # a new packer name on every row: each lands in "(other)"
        fields = lines[number].split(",")
        fields[column] = f"NewPacker{number}"
        lines[number] = ",".join(fields)
    integrated_copy.write_text("\n".join(lines))
    dataset, encoding = malware.load_malware_with_encoding(integrated_copy.parent)
    packer = encoding.categorical("packer_type")
    assert packer.categories == (malware.OTHER,) and packer.counts == (240,)
    assert np.all(dataset.test_inputs[:, packer.start] == 1.0)


def test_loaders_can_be_called_by_name_shape(shared_data_dir):
    # The signature the dataset registry uses: loader(data_dir) -> Dataset.
    for loader in (adult.load_adult, malware.load_malware):
        assert isinstance(loader(shared_data_dir), data.Dataset)
