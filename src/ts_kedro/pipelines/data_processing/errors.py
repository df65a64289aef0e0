"""Domain errors of data_processing: each names the file, column and rows at fault and what to do."""
from __future__ import annotations


class DataProcessingError(ValueError):
    """Base class of every fault data_processing stops on."""


class SchemaError(DataProcessingError):
    """The raw file cannot be turned into a panel: empty, missing column, unparseable or duplicate rows."""


class SeriesQualityError(DataProcessingError):
    """Series-level faults with ``series_policy: fail``, or every series quarantined."""


class DataProcessingConfigError(DataProcessingError):
    """A ``data_processing`` parameter has a value the pipeline does not know."""
