"""The real-parts fixtures (session-scoped servers), shared with every test in this folder."""

