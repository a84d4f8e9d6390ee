"""Report folders: written whole or not at all, and never over someone else's files.

Every run writes one folder holding ``report.json`` (every number and the resolved config),
``report.md`` (for people) and pictures. :func:`report_folder` stages everything in a hidden
sibling folder and moves it into place only when the run has succeeded, so a crash leaves the
previous report (or nothing) intact, never a mixture.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

from jaxreform.errors import ReportExistsError

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
_PACKAGES = ("jaxreform", "jax", "jaxlib", "flax", "optax", "chex", "numpy", "matplotlib")


def package_versions() -> dict[str, str | None]:
    """Versions of Python and of the packages a result depends on (None if not installed)."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0],
                                       "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_output_folder(out_dir: str | os.PathLike, *, overwrite: bool) -> Path:
    """Checks that a report may be written to ``out_dir`` before any work starts.

    Allowed: a folder that does not exist, an empty one, or (with ``overwrite``) one that holds
    a previous report. Refused: a previous report without ``overwrite``, and a non-empty folder
    that holds no report (it is somebody else's; jaxreform never deletes it).

    Raises:
        ReportExistsError: saying which case applies and what to do.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportExistsError(f"output path {str(out_dir)!r} exists and is not a folder.")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return out_dir
    if not (out_dir / REPORT_JSON).is_file():
        raise ReportExistsError(
            f"output folder {str(out_dir)!r} is not empty and holds no {REPORT_JSON}; "
            "choose a new or empty folder (jaxreform never deletes files it did not write)."
        )
    if not overwrite:
        raise ReportExistsError(
            f"output folder {str(out_dir)!r} already holds a report; pass --overwrite to "
            "replace it, or choose another folder."
        )
    return out_dir


@contextlib.contextmanager
def report_folder(out_dir: str | os.PathLike, *, overwrite: bool):
    """Yields a staging folder; on success it atomically replaces ``out_dir``.

    On an exception the staging folder is removed and ``out_dir`` is left as it was.
    The replacement is two renames on one file system: the old report is moved aside, the
    new one moved in, then the old one deleted.
    """
    out_dir = check_output_folder(out_dir, overwrite=overwrite).resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    check_output_folder(out_dir, overwrite=overwrite)  # nothing appeared while we worked
    retired = None
    if out_dir.exists():
        retired = out_dir.with_name(f".{out_dir.name}.replaced-{os.getpid()}")
        out_dir.rename(retired)
    staging.rename(out_dir)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _json_ready(value):
    """Converts NaN/Inf to None (strict JSON) and tuples to lists, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Writes ``payload`` as indented strict JSON (NaN/Inf become null)."""
    text = json.dumps(_json_ready(payload), indent=2, allow_nan=False, sort_keys=False)
    Path(path).write_text(text + "\n", encoding="utf-8")


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats get 4 significant decimals."""

    def cell(value):
        if isinstance(value, float):
            return "n/a" if not math.isfinite(value) else f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
