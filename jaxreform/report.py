"""Report folders: written whole or not at all, and never over someone else's files.

Every run writes one folder holding ``report.json`` (every number and the resolved config),
``report.md`` (for people) and pictures. :func:`report_folder` stages everything in a hidden
sibling folder and moves it into place only when the run has succeeded, so a crash leaves the
previous report (or nothing) intact, never a mixture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ctypes
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from jaxreform.errors import OutputFolderError, ReportExistsError

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


def _previous_report_files(out_dir: Path) -> set[str]:
    try:
        listed = json.loads((out_dir / REPORT_JSON).read_text(encoding="utf-8"))["files"]
        return {str(name) for name in listed}
    except (OSError, ValueError, KeyError, TypeError):
        raise ReportExistsError(
            f"output folder {str(out_dir)!r} holds a {REPORT_JSON} that jaxreform cannot read "
            "(no list of the files it wrote); choose another folder.") from None


def check_output_folder(out_dir: str | os.PathLike, *, overwrite: bool) -> Path:
    """Checks that a report may be written to ``out_dir`` before any work starts.

    Allowed: a folder that does not exist, an empty one, or (with ``overwrite``) one that
    holds a previous jaxreform report and nothing else. Refused: a previous report without
    ``overwrite``; a folder that also holds files the report did not list (somebody's work:
    jaxreform never deletes it); a non-empty folder with no report; the current directory or
    one of its parents.

    Raises:
        ReportExistsError: saying which case applies and what to do.
    """
    out_dir = Path(out_dir).expanduser()
    resolved = out_dir.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise ReportExistsError(
            f"output folder {str(out_dir)!r} is the current directory or one of its parents; "
            "name a new folder for the report.")
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportExistsError(f"output path {str(out_dir)!r} exists and is not a folder.")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return out_dir
    if not (out_dir / REPORT_JSON).is_file():
        raise ReportExistsError(
            f"output folder {str(out_dir)!r} is not empty and holds no {REPORT_JSON}; "
            "choose a new or empty folder (jaxreform never deletes files it did not write).")
    if not overwrite:
        raise ReportExistsError(
            f"output folder {str(out_dir)!r} already holds a report; pass --overwrite to "
            "replace it, or choose another folder.")
    foreign = sorted(p.name for p in out_dir.iterdir()
                     if p.name not in _previous_report_files(out_dir))
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise ReportExistsError(
            f"output folder {str(out_dir)!r} holds files that are not part of its report "
            f"({shown}); move them away or choose another folder (--overwrite only replaces "
            "a report's own files).")
    return out_dir


def _exchange_atomically(first: Path, second: Path) -> bool:
    """Swaps two paths in one system call (Linux renameat2 RENAME_EXCHANGE).

    Returns False where the call is unsupported; nothing has changed then.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    status = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second),
                       rename_exchange)
    return status == 0


def _swap_in(staging: Path, out_dir: Path) -> None:
    """Moves ``staging`` to ``out_dir``, replacing a previous report as one step."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    if _exchange_atomically(staging, out_dir):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the previous report
        return
    # Fallback (no renameat2): two renames with Ctrl-C held off between them, rolled back if
    # the second fails. A power cut between them leaves the old report in the hidden
    # ".NAME.replaced-PID" folder beside it.
    retired = out_dir.with_name(f".{out_dir.name}.replaced-{os.getpid()}")
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        out_dir.rename(retired)
        try:
            staging.rename(out_dir)
        except OSError:
            retired.rename(out_dir)
            raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    shutil.rmtree(retired, ignore_errors=True)


@contextlib.contextmanager
def report_folder(out_dir: str | os.PathLike, *, overwrite: bool):
    """Yields a staging folder; on success it replaces ``out_dir`` in one step.

    The output folder is checked (and its parent created) before the body runs, so a bad
    ``--out`` fails at once. On an exception the staging folder is removed and ``out_dir`` is
    left as it was. Where the system allows (Linux), the old and the new report are exchanged
    by one ``renameat2`` call.

    Raises:
        ReportExistsError: see :func:`check_output_folder`.
        OutputFolderError: if the folder's parent cannot be created or written.
    """
    out_dir = check_output_folder(out_dir, overwrite=overwrite).resolve()
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    except OSError as error:
        raise OutputFolderError(
            f"cannot create the output folder {str(out_dir)!r}: "
            f"{error.strerror or error}") from None
    try:
        yield staging
        check_output_folder(out_dir, overwrite=overwrite)  # nothing foreign appeared meanwhile
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        _swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


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


def _with_defaults(stored, config):
    """``stored`` (a config's JSON form) with the settings it lacks filled in with their
    defaults, at every level of nested dataclass settings. A report written before a setting
    existed was made with that setting's default."""
    if not (dataclasses.is_dataclass(config) and isinstance(stored, dict)):
        return stored
    filled = dict(stored)
    for field in dataclasses.fields(config):
        if field.name in filled:
            filled[field.name] = _with_defaults(filled[field.name],
                                                getattr(config, field.name))
        elif field.default is not dataclasses.MISSING:
            filled[field.name] = json.loads(json.dumps(_json_ready(field.default)))
        elif field.default_factory is not dataclasses.MISSING:
            filled[field.name] = json.loads(json.dumps(_json_ready(field.default_factory())))
    return filled


def matching_report(out_dir: str | os.PathLike, config, summarize=None) -> dict | None:
    """The report in ``out_dir`` if it was made with exactly ``config``, else None.

    For resumable experiment drivers: a run whose folder already holds a report of the same
    resolved configuration (a dataclass, compared as its JSON form) need not run again. A
    setting missing from the stored configuration (added to the dataclass after the report
    was written), at any level of nested dataclass settings, counts as its default value.

    Args:
        out_dir: A report folder.
        config: The dataclass the run would be made with.
        summarize: Optional ``payload -> anything`` the caller will apply to the report; a
            report it cannot summarise (missing or malformed fields) counts as absent.

    Returns:
        The parsed ``report.json``, or None when it is missing, unreadable, not a JSON object,
        made with another configuration, or fails ``summarize``.
    """
    path = Path(out_dir) / REPORT_JSON
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, a folder, truncated, bad UTF-8 or bad JSON
        return None
    wanted = json.loads(json.dumps(_json_ready(dataclasses.asdict(config))))
    if not isinstance(payload, dict) or not isinstance(payload.get("config"), dict):
        return None
    if _with_defaults(payload["config"], config) != wanted:
        return None
    if summarize is not None:
        try:
            summarize(payload)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            return None
    return payload
