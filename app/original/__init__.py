"""The original API's dialect: routes, bodies and error shapes kept so its existing clients keep working."""

from app.original.endpoints import ENDPOINTS, SCHEMAS

__all__ = ["ENDPOINTS", "SCHEMAS"]
