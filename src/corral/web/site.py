"""The dashboard's files: plain HTML, CSS and JavaScript modules shipped in the package.

No build step and nothing fetched from the internet: the browser loads /ui/ (index.html) and
its modules from the same server, and every page talks to the same API with the user's token.
The Content-Security-Policy allows only this origin (no inline script, no CDN), so a workload
name containing markup can never run as code, even if a page forgot to escape it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

__all__ = ["CSP", "STATIC_DIR", "mount_site", "router"]

STATIC_DIR = Path(__file__).parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    """A browser opening the address `corral up` prints lands on the dashboard."""
    return RedirectResponse("ui/", status_code=307)


class DashboardFiles(StaticFiles):
    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-cache"  # revalidate: an upgrade shows at once
        return response


def mount_site(app: FastAPI) -> None:
    app.mount("/ui", DashboardFiles(directory=STATIC_DIR, html=True), name="dashboard")
