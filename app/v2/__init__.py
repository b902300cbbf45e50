"""The Open Inference Protocol (V2) front-end: KServe's, Triton's and MLServer's REST dialect."""

from app.v2.endpoints import ENDPOINTS, SCHEMAS
from app.v2.errors import error_response, invalid_response
from app.v2.types import state_max_records

__all__ = ["ENDPOINTS", "SCHEMAS", "error_response", "invalid_response", "state_max_records"]
