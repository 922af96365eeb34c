"""corral.api: the HTTP API (FastAPI). Thin: policy lives in corral.control and corral.core."""

from corral.api.app import create_app
from corral.api.context import ApiContext

__all__ = ["ApiContext", "create_app"]
