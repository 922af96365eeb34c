"""corral.web: the dashboard (static files served by the API server, no build step), its
read-only data endpoints under /v1/dashboard, and Prometheus metrics at /metrics.

See README.md in this folder for the pages, how data flows, and how to add a panel.
"""

from corral.web.mount import install, observe_loop
from corral.web.settings import WebSettings

__all__ = ["WebSettings", "install", "observe_loop"]
