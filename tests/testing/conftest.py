"""The real-parts fixtures (session-scoped servers), shared with every test in this folder."""

from corral.testing.fixtures import *  # noqa: F403
