"""The original API's dialect: routes, bodies and error shapes kept so its existing clients keep working."""

from app.original.endpoints import ENDPOINTS, SCHEMAS
from app.original.errors import error_response, invalid_response
from app.original.schemas import state_max_records

__all__ = ["ENDPOINTS", "SCHEMAS", "error_response", "invalid_response", "state_max_records"]
