"""What can go wrong while serving, one exception type per kind; the front-ends turn them into responses.

Every message is one sentence safe to show a client. The core raises them; it never picks a status code.
"""

from __future__ import annotations


class ServingError(Exception):
    """A failure a client may be told about; kinds without a more precise type are server faults."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidModelName(ServingError):
    """The name is not a plain file name: it could never be a model in the folder."""


class ModelOutsideFolder(ServingError):
    """The model file is a link leading out of the models folder."""


class ModelNotFound(ServingError):
    """No such model file in the folder (or no such version of it)."""


class InvalidInput(ServingError):
    """The records or columns cannot be predicted on: missing, ragged, unknown categories, bad numbers."""


class TooManyRecords(ServingError):
    """More records in one request than MAX_RECORDS."""

    @classmethod
    def of(cls, records: int, max_records: int) -> TooManyRecords:
        return cls(f"Got {records} records; at most MAX_RECORDS={max_records} are accepted per request.")


class ModelLoadFailed(ServingError):
    """The file exists but holds nothing that can be served."""


class ModelPredictFailed(ServingError):
    """A loaded model raised while predicting."""


class ModelsFolderUnavailable(ServingError):
    """The models folder cannot be read right now."""


class StoreUnavailable(ServingError):
    """The capture store cannot be reached or written now; `reason` (the driver's words) is for the log only."""

    def __init__(self, reason: str) -> None:
        super().__init__("The capture store cannot be reached now; the cause is in the server log.")
        self.reason = reason

    def __str__(self) -> str:
        return self.reason
