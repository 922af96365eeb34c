"""`python -m corral.agent --server URL --join-token T`: the agent without the rest of the CLI."""

import typer

from corral.agent.command import agent

if __name__ == "__main__":
    typer.run(agent)
