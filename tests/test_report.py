"""Report folders are written whole or not at all, and never over foreign files."""

from __future__ import annotations

import json
import os

import pytest

from jaxreform import report
from jaxreform.errors import OutputFolderError, ReportExistsError


def _read(folder):
    return json.loads((folder / "report.json").read_text())


def _write_report(folder, value):
    with report.report_folder(folder, overwrite=True) as staging:
        report.write_json(staging / report.REPORT_JSON,
                          {"value": value, "files": ["report.json"]})


def test_new_folder_is_created_with_its_report(tmp_path):
    _write_report(tmp_path / "out", 1)
    assert _read(tmp_path / "out")["value"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging left behind


def test_existing_report_needs_overwrite(tmp_path):
    _write_report(tmp_path / "out", 1)
    with pytest.raises(ReportExistsError, match="already holds a report; pass --overwrite"):
        report.check_output_folder(tmp_path / "out", overwrite=False)
    _write_report(tmp_path / "out", 2)
    assert _read(tmp_path / "out")["value"] == 2


def test_failure_midway_leaves_the_old_report_untouched(tmp_path):
    _write_report(tmp_path / "out", 1)
    with pytest.raises(ZeroDivisionError):
        with report.report_folder(tmp_path / "out", overwrite=True) as staging:
            (staging / "report.json").write_text("half")
            1 / 0
    assert _read(tmp_path / "out")["value"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_foreign_folder_is_never_overwritten(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ReportExistsError, match="not empty and holds no report.json"):
        report.check_output_folder(tmp_path / "mine", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ReportExistsError, match="is not a folder"):
        report.check_output_folder(tmp_path / "file", overwrite=True)
    report.check_output_folder(tmp_path / "empty", overwrite=False)  # absent: fine


def test_json_is_strict_with_nan_as_null(tmp_path):
    report.write_json(tmp_path / "r.json", {"precision": float("nan"), "pair": (1, 2.5)})
    assert json.loads((tmp_path / "r.json").read_text()) == {"precision": None, "pair": [1, 2.5]}


def test_overwrite_never_deletes_files_the_report_did_not_list(tmp_path):
    _write_report(tmp_path / "out", 1)
    (tmp_path / "out" / "thesis.txt").write_text("precious")
    with pytest.raises(ReportExistsError, match=r"holds files that are not part of its report "
                                                r"\(thesis.txt\)"):
        _write_report(tmp_path / "out", 2)
    assert (tmp_path / "out" / "thesis.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unusable_destinations_fail_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputFolderError, match="cannot create the output folder"):
        with report.report_folder(tmp_path / "afile" / "sub", overwrite=False):
            raise AssertionError("the body must not run")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReportExistsError, match="is the current directory or one of its parents"):
        report.check_output_folder(".", overwrite=True)


def test_report_folder_gets_ordinary_permissions(tmp_path):
    _write_report(tmp_path / "out", 1)
    mode = (tmp_path / "out").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o777 & ~umask


def test_replacement_is_one_exchange_where_the_system_has_it(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "from-a").write_text("a")
    (tmp_path / "b").mkdir()
    if not report._exchange_atomically(tmp_path / "a", tmp_path / "b"):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here; the fallback is used")
    assert (tmp_path / "b" / "from-a").exists() and not (tmp_path / "a" / "from-a").exists()


def test_matching_report_reuses_only_an_intact_report_of_the_same_config(tmp_path):
    import dataclasses

    @dataclasses.dataclass(frozen=True)
    class Settings:
        epochs: int = 3
        sizes: tuple = (16, 32)

    folder = tmp_path / "run"
    with report.report_folder(folder, overwrite=False) as staging:
        report.write_json(staging / report.REPORT_JSON,
                          {"config": dataclasses.asdict(Settings()), "results": {"a": 1.0}})
    assert report.matching_report(folder, Settings())["results"] == {"a": 1.0}
    assert report.matching_report(folder, Settings(epochs=4)) is None
    assert report.matching_report(folder, Settings(), lambda p: p["results"]["missing"]) is None
    assert report.matching_report(tmp_path / "absent", Settings()) is None

    @dataclasses.dataclass(frozen=True)
    class LaterSettings(Settings):  # a setting added after the report was written
        noise: float | None = None

    assert report.matching_report(folder, LaterSettings())["results"] == {"a": 1.0}
    assert report.matching_report(folder, LaterSettings(noise=1.0)) is None

    @dataclasses.dataclass(frozen=True)
    class Outer:  # the same rule inside nested settings
        inner: Settings = Settings()

    @dataclasses.dataclass(frozen=True)
    class LaterOuter:
        inner: LaterSettings = LaterSettings()

    nested = tmp_path / "nested"
    with report.report_folder(nested, overwrite=False) as staging:
        report.write_json(staging / report.REPORT_JSON,
                          {"config": dataclasses.asdict(Outer()), "results": {}})
    assert report.matching_report(nested, LaterOuter()) is not None
    assert report.matching_report(nested, LaterOuter(LaterSettings(noise=2.0))) is None
    for damaged in ("", "{\"config\": ", "[]", "\xff"):
        (folder / report.REPORT_JSON).write_text(damaged, encoding="latin-1")
        assert report.matching_report(folder, Settings()) is None
