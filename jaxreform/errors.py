"""Errors that jaxreform raises on bad input.

Every error here subclasses a built-in (``ValueError`` or ``FileExistsError``) so callers
that already catch those keep working; the command line turns each into a one-line message
and a non-zero exit status.
"""

from __future__ import annotations

import os


class JaxreformError(Exception):
    """Base class of the errors below; the CLI prints these without a traceback."""


class DataFileError(JaxreformError, ValueError):
    """A data file is missing, truncated, corrupt or inconsistent with its header.

    The message always names the file and what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DataDirError(JaxreformError, FileNotFoundError):
    """The data directory, or a dataset inside it, cannot be found."""


class InvalidDataError(JaxreformError, ValueError):
    """In-memory data has the wrong shape, dtype or values (e.g. NaN, labels out of range)."""


class ConfigError(JaxreformError, ValueError):
    """A setting is unknown or out of range (e.g. an unknown dataset or reformer name)."""


class ReportExistsError(JaxreformError, FileExistsError):
    """The output folder already holds a report (or other files) and overwriting was not asked."""


class SolverError(JaxreformError, RuntimeError):
    """An inverse-Hessian solver diverged or missed its tolerance; the message says which
    setting to change."""


class OutputFolderError(JaxreformError, OSError):
    """The output folder cannot be created or written (e.g. its parent is a file)."""


class TrainingDivergedError(JaxreformError, RuntimeError):
    """The training loss became NaN or Inf; the message says which setting to lower."""
