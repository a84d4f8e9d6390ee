"""jaxreform: privacy-preserving machine learning by data reformation, in JAX/Flax.

Modules: :mod:`~jaxreform.data` (loaders), :mod:`~jaxreform.models` (Flax modules),
:mod:`~jaxreform.train` (optax training loop), :mod:`~jaxreform.reformers` (data reformers),
:mod:`~jaxreform.metrics` (distances and membership-attack metrics),
:mod:`~jaxreform.pipeline` (the main job), :mod:`~jaxreform.report` (report folders).
"""

__version__ = "0.1.0"

from jaxreform.errors import (  # noqa: E402
    ConfigError,
    DataDirError,
    DataFileError,
    InvalidDataError,
    JaxreformError,
    ReportExistsError,
)

__all__ = [
    "ConfigError", "DataDirError", "DataFileError", "InvalidDataError", "JaxreformError",
    "ReportExistsError", "__version__",
]
