"""UCI Adult (census income) from the original files, encoded with a mapping kept per column.

The data folder holds ``adult.data`` (training), ``adult.test`` (test) and ``adult.names``
(the schema), directly or in an ``adult/`` subfolder. Unlike MNIST there is no embedded copy:
without a data folder the loader stops and says how to give one.

How the records become numbers (every choice is made on the training split alone):

- Column names and the categories each categorical column may take come from
  ``adult.names``; the label (the unnamed last column, called ``income`` here) is ``<=50K``
  → 0, ``>50K`` → 1. A label's trailing ``.`` (the test file's convention) is dropped.
- Blank lines and lines starting with ``|`` (the test file's first line) are skipped.
- Missing values (``?``): in a categorical column ``?`` is a category of its own, called
  ``"missing"`` (2,399 training records have one, all in workclass, occupation or
  native-country). A ``?`` in a continuous column is refused: the original files have none,
  and imputing one would invent data.
- Categorical columns are one-hot over the categories that occur in the training split, in
  the order ``adult.names`` lists them, with ``"missing"`` last. The blocks are left as 0/1
  (not standardised), so each record's block is exactly one-hot: :mod:`jaxreform.attacks.
  attribute` relies on that. A test value that the training split never shows is refused,
  naming the file, line and column (it cannot happen with the original files).
- Continuous columns are standardised with the training split's mean and standard deviation
  (``ddof=0``); the test split reuses them.
- Records are kept as they are: the original UCI split is fixed, so duplicate records
  (within or across the two files) are not removed.

:class:`TabularEncoding` records where each original column went (its slice, categories with
their training counts, or its mean and standard deviation), so that an attack can set or read
one attribute. The malware loader (:mod:`jaxreform.data.malware`) shares these pieces.

Shapes: n records, d encoded features, c categories of one column.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxreform.data.core import DATA_DIR_ENV, Dataset, resolve_data_dir
from jaxreform.errors import ConfigError, DataDirError, DataFileError

MISSING = "missing"
ADULT_LABELS = ("<=50K", ">50K")
LABEL_COLUMN = "income"
_FILES = {"train": "adult.data", "test": "adult.test", "names": "adult.names"}


# ----------------------------------------------------------------------------------------------
# The encoding: where each original column lives in the feature vector.


@dataclasses.dataclass(frozen=True)
class ContinuousColumn:
    """A numeric column encoded as one standardised feature.

    Attributes:
        name: Column name in the source file.
        index: Its feature index in ``[0, d)``.
        mean: Training-split mean of the (possibly log-scaled) values.
        std: Training-split standard deviation (``ddof=0``); 1.0 for a constant column.
        log_scaled: Whether ``sign(x) * log1p(|x|)`` was applied before standardising.
    """

    name: str
    index: int
    mean: float
    std: float
    log_scaled: bool = False

    @property
    def slice(self) -> slice:
        """The feature slice of this column (one feature)."""
        return slice(self.index, self.index + 1)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Raw values ``[n]`` → standardised features ``[n]`` float64."""
        values = np.asarray(values, dtype=np.float64)
        if self.log_scaled:
            values = np.sign(values) * np.log1p(np.abs(values))
        return (values - self.mean) / self.std


@dataclasses.dataclass(frozen=True)
class CategoricalColumn:
    """A text column encoded as a one-hot block.

    Attributes:
        name: Column name in the source file.
        start: Feature index of the block's first entry; the block is ``[start, start + c)``.
        categories: The c category names, one per block entry.
        counts: Training-split count of each category (c ints): the attribute's prior.
        unknown: The category that receives values the training split never showed, or None
            if such a value is an error.
    """

    name: str
    start: int
    categories: tuple[str, ...]
    counts: tuple[int, ...]
    unknown: str | None = None

    @property
    def size(self) -> int:
        """Number of categories c (the block's width)."""
        return len(self.categories)

    @property
    def slice(self) -> slice:
        """The feature slice ``[start, start + c)`` of this column's block."""
        return slice(self.start, self.start + self.size)

    def prior(self) -> np.ndarray:
        """Training-split frequency of each category, ``[c]`` float64 summing to 1."""
        counts = np.asarray(self.counts, dtype=np.float64)
        return counts / counts.sum()


Column = ContinuousColumn | CategoricalColumn


@dataclasses.dataclass(frozen=True)
class TabularEncoding:
    """How the original columns of a table map onto the encoded feature vector.

    Attributes:
        dataset: Dataset name, e.g. ``"adult"``.
        columns: The feature columns in their original order (the label excluded).
        label_name: Name of the label column.
        label_values: The label text of each class index, e.g. ``("<=50K", ">50K")``.
    """

    dataset: str
    columns: tuple[Column, ...]
    label_name: str
    label_values: tuple[str, ...]

    @property
    def num_features(self) -> int:
        """Width d of an encoded record."""
        return max(column.slice.stop for column in self.columns)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of the original feature columns, in order."""
        return tuple(column.name for column in self.columns)

    def feature_names(self) -> tuple[str, ...]:
        """One name per encoded feature (d strings): ``"age"``, ``"sex=Female"``, ..."""
        names: list[str] = []
        for column in self.columns:
            if isinstance(column, CategoricalColumn):
                names.extend(f"{column.name}={category}" for category in column.categories)
            else:
                names.append(column.name)
        return tuple(names)

    def column(self, name: str) -> Column:
        """The column called ``name``.

        Raises:
            ConfigError: if there is none, listing the column names.
        """
        for column in self.columns:
            if column.name == name:
                return column
        raise ConfigError(f"{self.dataset} has no column {name!r}; its columns are: "
                          f"{', '.join(self.column_names)}.")

    def categorical(self, name: str) -> CategoricalColumn:
        """The categorical column called ``name``.

        Raises:
            ConfigError: if there is none or it is continuous, listing the categorical ones.
        """
        column = self.column(name)
        if not isinstance(column, CategoricalColumn):
            choices = [c.name for c in self.columns if isinstance(c, CategoricalColumn)]
            raise ConfigError(f"{self.dataset} column {name!r} is continuous, not categorical; "
                              f"the categorical columns are: {', '.join(choices)}.")
        return column


# ----------------------------------------------------------------------------------------------
# Text tables: cells with the line each record came from, so errors can name the place.


@dataclasses.dataclass(frozen=True, eq=False)
class TextTable:
    """The text cells of a delimited file, one record per row, label column included.

    Attributes:
        path: The file the records were read from.
        column_names: The name of each column (w names).
        lines: ``[n]`` int64, the 1-based line number of each record in ``path``.
        cells: n records of w stripped strings each.
    """

    path: Path
    column_names: tuple[str, ...]
    lines: np.ndarray
    cells: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.cells)

    def values(self, name: str) -> list[str]:
        """The n cells of the column called ``name``."""
        j = self.column_names.index(name)
        return [row[j] for row in self.cells]

    def take(self, rows: Sequence[int] | np.ndarray) -> TextTable:
        """A table holding only the given record indices, in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        return dataclasses.replace(self, lines=self.lines[rows],
                                   cells=tuple(self.cells[int(i)] for i in rows))

    def error(self, row: int, name: str, problem: str) -> DataFileError:
        """A DataFileError naming this file, the record's line and the column ``name``."""
        j = self.column_names.index(name)
        return DataFileError(self.path, f"line {int(self.lines[row])}, column {j + 1} ({name}): "
                                        f"{problem}")


def read_text_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file, with ``\\n`` or ``\\r\\n`` endings removed.

    Raises:
        DataFileError: if the file is missing, unreadable or not UTF-8 text.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise DataFileError(path, "file not found") from None
    except OSError as error:
        raise DataFileError(path, f"cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise DataFileError(path, f"line {line}: not UTF-8 text (byte {error.start}); the file "
                                  "is corrupt or not a data file") from None
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def check_record_width(path: Path, line: int, fields: Sequence[str], names: Sequence[str],
                       declared_by: str) -> None:
    """Raises DataFileError naming the first missing or extra column of one record."""
    if len(fields) < len(names):
        j = len(fields)
        raise DataFileError(path, f"line {line}, column {j + 1} ({names[j]}): missing; the record "
                                  f"has {len(fields)} fields but {declared_by} declares "
                                  f"{len(names)}")
    if len(fields) > len(names):
        j = len(names)
        raise DataFileError(path, f"line {line}, column {j + 1}: extra field {fields[j]!r}; "
                                  f"{declared_by} declares {len(names)} columns")


def parse_numbers(table: TextTable, name: str) -> np.ndarray:
    """The column ``name`` parsed as finite numbers, ``[n]`` float64.

    Raises:
        DataFileError: at the first empty, missing (``?``), non-numeric or non-finite cell,
            naming its file, line and column.
    """
    values = np.empty(len(table), dtype=np.float64)
    for row, text in enumerate(table.values(name)):
        if text in ("", "?"):
            what = "empty" if text == "" else "missing ('?')"
            raise table.error(row, name, f"value is {what} in a numeric column; only "
                                         "categorical columns may have missing values")
        try:
            value = float(text)
        except ValueError:
            raise table.error(row, name, f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise table.error(row, name, f"{text!r} is not a finite number")
        values[row] = value
    return values


# ----------------------------------------------------------------------------------------------
# Fitting an encoding on the training split and applying it to any split.


def fit_continuous(table: TextTable, name: str, index: int, *,
                   log_scaled: bool = False) -> ContinuousColumn:
    """Fits one numeric column's training mean and standard deviation (see
    :class:`ContinuousColumn`)."""
    unscaled = ContinuousColumn(name, index, 0.0, 1.0, log_scaled)
    values = unscaled.encode(parse_numbers(table, name))
    std = float(values.std())
    return ContinuousColumn(name, index, float(values.mean()), std if std > 0 else 1.0, log_scaled)


def fit_categorical(table: TextTable, name: str, start: int, *, order: Sequence[str] = (),
                    min_count: int = 1, unknown: str | None = None) -> CategoricalColumn:
    """The categories of one text column in the training split, with their counts.

    Categories listed in ``order`` come first, in that order; the others follow by descending
    count, then by name. With ``unknown`` set, categories seen fewer than ``min_count`` times
    are merged into a category of that name (placed last), which also receives unseen values
    at encoding time.
    """
    found = dict(collections.Counter(table.values(name)))
    merged = 0
    if unknown is not None:
        rare = [v for v, c in found.items() if c < min_count or v == unknown]
        merged = sum(found.pop(v) for v in rare)
    rank = {category: i for i, category in enumerate(order)}
    categories = sorted(found, key=lambda v: (rank.get(v, len(rank)), -found[v], v))
    if unknown is not None:
        categories.append(unknown)
        found[unknown] = merged
    return CategoricalColumn(name, start, tuple(categories),
                             tuple(found[c] for c in categories), unknown)


def encode_table(table: TextTable, encoding: TabularEncoding) -> np.ndarray:
    """Encodes every record of ``table`` with ``encoding``: ``[n, d]`` float32.

    Raises:
        DataFileError: for a bad number, or a category that the training split never showed
            in a column without an ``unknown`` category (naming file, line and column).
    """
    features = np.zeros((len(table), encoding.num_features), dtype=np.float32)
    for column in encoding.columns:
        if isinstance(column, ContinuousColumn):
            features[:, column.index] = column.encode(parse_numbers(table, column.name))
            continue
        index = {category: i for i, category in enumerate(column.categories)}
        for row, value in enumerate(table.values(column.name)):
            position = index.get(value)
            if position is None and column.unknown is not None:
                position = index[column.unknown]
            if position is None:
                raise table.error(row, column.name, (
                    f"category {value!r} never occurs in the training split, so it has no "
                    f"one-hot entry; the training categories are: "
                    f"{', '.join(column.categories)}"))
            features[row, column.start + position] = 1.0
    return features


def parse_labels(table: TextTable, name: str, label_values: Sequence[str], *,
                 strip_dot: bool = False) -> np.ndarray:
    """Class indices ``[n]`` int32 of the label column (``label_values[i]`` → i).

    Raises:
        DataFileError: at the first label that is not one of ``label_values``.
    """
    index = {value: i for i, value in enumerate(label_values)}
    labels = np.empty(len(table), dtype=np.int32)
    for row, text in enumerate(table.values(name)):
        key = text[:-1] if strip_dot and text.endswith(".") else text
        if key not in index:
            raise table.error(row, name, f"unknown label {text!r}; expected one of "
                                         f"{', '.join(label_values)}")
        labels[row] = index[key]
    return labels


# ----------------------------------------------------------------------------------------------
# Adult: the schema in adult.names and the two record files.


@dataclasses.dataclass(frozen=True)
class AdultSchema:
    """What ``adult.names`` declares.

    Attributes:
        attributes: ``(name, categories)`` per feature column in file order; ``categories``
            is None for a continuous column.
        labels: The label values the names file declares (as a set, in its order).
    """

    attributes: tuple[tuple[str, tuple[str, ...] | None], ...]
    labels: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        """Feature names then the label column's name."""
        return tuple(name for name, _ in self.attributes) + (LABEL_COLUMN,)


def find_adult_files(data_dir: str | os.PathLike) -> dict[str, Path]:
    """Locates ``adult.data``, ``adult.test`` and ``adult.names`` in ``data_dir/adult`` or
    ``data_dir``.

    Raises:
        DataDirError: naming the folders searched and the files missing.
    """
    data_dir = Path(data_dir)
    candidates = [data_dir / "adult", data_dir]
    for folder in candidates:
        if all((folder / name).is_file() for name in _FILES.values()):
            return {key: folder / name for key, name in _FILES.items()}
    best = max(candidates, key=lambda f: sum((f / n).is_file() for n in _FILES.values()))
    missing = [name for name in _FILES.values() if not (best / name).is_file()]
    raise DataDirError(f"UCI Adult not found in {str(data_dir)!r}: searched "
                       f"{[str(c) for c in candidates]}; missing {', '.join(missing)}.")


def _split_fields(text: str) -> list[str]:
    return [field.strip() for field in text.rstrip().removesuffix(".").split(",")]


def read_adult_names(path: Path) -> AdultSchema:
    """Parses ``adult.names``: the class line, then one ``name: continuous.`` or
    ``name: value, value, ....`` line per attribute (lines starting with ``|`` are comments).

    Raises:
        DataFileError: if a line is malformed or no attribute is declared.
    """
    labels: tuple[str, ...] | None = None
    attributes: list[tuple[str, tuple[str, ...] | None]] = []
    for number, text in enumerate(read_text_lines(path), start=1):
        if not text.strip() or text.lstrip().startswith("|"):
            continue
        if labels is None:
            labels = tuple(_split_fields(text))
            continue
        name, colon, spec = text.partition(":")
        fields = _split_fields(spec)
        if not colon or not name.strip() or not all(fields):
            raise DataFileError(path, f"line {number}: expected 'name: continuous.' or "
                                      f"'name: value, value, ....', got {text.strip()!r}")
        categories = None if fields == ["continuous"] else tuple(fields)
        attributes.append((name.strip(), categories))
    if labels is None or not attributes:
        raise DataFileError(path, "declares no attributes: not the adult.names schema file")
    if sorted(labels) != sorted(ADULT_LABELS):
        raise DataFileError(path, f"declares the labels {', '.join(labels)}; expected "
                                  f"{', '.join(ADULT_LABELS)}")
    return AdultSchema(tuple(attributes), labels)


def read_adult_records(path: Path, schema: AdultSchema) -> TextTable:
    """Reads one record file into a text table, ``?`` in categorical columns as ``"missing"``.

    Blank lines and ``|`` comment lines (the test file's first line) are skipped. Every
    categorical value must be one that ``adult.names`` declares, or ``?``.

    Raises:
        DataFileError: for a missing or extra column, an undeclared category, or a file
            without records, naming the file, line and column.
    """
    names = schema.column_names
    lines, cells = [], []
    for number, text in enumerate(read_text_lines(path), start=1):
        if not text.strip() or text.lstrip().startswith("|"):
            continue
        fields = [field.strip() for field in text.split(",")]
        check_record_width(path, number, fields, names, "adult.names")
        for (name, categories), value in zip(schema.attributes, fields):
            if categories is None:
                continue
            if value == "?":
                fields[names.index(name)] = MISSING
            elif value not in categories:
                raise DataFileError(path, f"line {number}, column {names.index(name) + 1} "
                                          f"({name}): {value!r} is not a category adult.names "
                                          f"declares for {name}")
        lines.append(number)
        cells.append(tuple(fields))
    if not cells:
        raise DataFileError(path, "holds no records (the file is empty or only comments)")
    return TextTable(path, names, np.asarray(lines, dtype=np.int64), tuple(cells))


def fit_adult_encoding(train: TextTable, schema: AdultSchema) -> TabularEncoding:
    """Fits the Adult encoding on the training table (categories in ``adult.names`` order,
    ``"missing"`` last; training mean and standard deviation)."""
    columns: list[Column] = []
    start = 0
    for name, categories in schema.attributes:
        if categories is None:
            columns.append(fit_continuous(train, name, start))
        else:
            columns.append(fit_categorical(train, name, start, order=categories + (MISSING,)))
        start = columns[-1].slice.stop
    return TabularEncoding("adult", tuple(columns), LABEL_COLUMN, ADULT_LABELS)


def load_adult_with_encoding(
    data_dir: str | os.PathLike | None = None,
) -> tuple[Dataset, TabularEncoding]:
    """Loads UCI Adult and returns it with its :class:`TabularEncoding`.

    Args:
        data_dir: Folder holding ``adult.data``, ``adult.test`` and ``adult.names`` (or their
            ``adult/`` subfolder). If None, ``$JAXREFORM_DATA_DIR``.

    Returns:
        ``(dataset, encoding)``: 32,561 training and 16,281 test records of d = 108 float32
        features (6 standardised continuous columns, 8 one-hot blocks) with int32 labels
        (1 = ``>50K``), and the mapping from original columns to features.

    Raises:
        DataDirError: if no folder is given (Adult has no embedded copy), or it lacks a file.
        DataFileError: for a malformed record, naming the file, line and column.
    """
    folder = resolve_data_dir(data_dir)
    if folder is None:
        raise DataDirError(
            "UCI Adult has no embedded copy: pass --data-dir (data_dir=...) or set "
            f"${DATA_DIR_ENV} to a folder holding adult/adult.data, adult.test and adult.names.")
    files = find_adult_files(folder)
    schema = read_adult_names(files["names"])
    train = read_adult_records(files["train"], schema)
    test = read_adult_records(files["test"], schema)
    encoding = fit_adult_encoding(train, schema)
    dataset = Dataset(
        name="adult",
        train_inputs=encode_table(train, encoding),
        train_labels=parse_labels(train, LABEL_COLUMN, ADULT_LABELS, strip_dot=True),
        test_inputs=encode_table(test, encoding),
        test_labels=parse_labels(test, LABEL_COLUMN, ADULT_LABELS, strip_dot=True),
        num_classes=len(ADULT_LABELS),
        source=str(files["train"].parent.resolve()),
    )
    return dataset, encoding


def load_adult(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Loads UCI Adult: ``[n, 108]`` float32 features and int32 labels (1 = ``>50K``).

    See :func:`load_adult_with_encoding` (which also returns the column mapping) and the
    module docstring for the missing-value and encoding policy.
    """
    return load_adult_with_encoding(data_dir)[0]
