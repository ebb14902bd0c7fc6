"""Errors and warnings raised by the data layer."""

from __future__ import annotations

__all__ = ["CollectionError", "DataWarning", "DATA_HINT"]

#: Appended to "not found" messages so the user knows how to point the loaders at the data.
DATA_HINT = (
    "Set the environment variable RETRIEVAL_LAB_DATA to the folder that holds the collections "
    "(e.g. `export RETRIEVAL_LAB_DATA=/work/shared/datasets`), or give the dataset's `path` explicitly."
)


class CollectionError(ValueError):
    """A collection, topic, qrels or run file is missing or malformed.

    Messages name the file (and the line number where there is one) so the user can fix the input.
    """


class DataWarning(UserWarning):
    """Recoverable problems in input files (e.g. judgments naming unknown queries), reported with counts."""
