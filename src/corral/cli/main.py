"""The `corral` command line.

Client commands (submit, ls, queues, credits, users...) import the SDK only; `up`, `db`, `plan`
and `simulate` are loaded when they run (`corral.cli.lazy`), so that `corral ls` does not wait
for FastAPI, SQLAlchemy and numpy to import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from corral.agent.command import agent as agent_command
from corral.cli import agent, cluster, contexts, credits, offers, tenancy, workloads
from corral.cli import exec as _exec
from corral.cli import port_forward as _port_forward
from corral.cli import ssh as _ssh
from corral.cli import webhooks as _webhooks
from corral.cli.lazy import LazyGroup
from corral.cli.secrets import secrets_app

app = typer.Typer(
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish, pwsh)
    help="corral: one pool of GPUs, scheduled fairly and densely, metered to the cent.",
)
app.add_typer(credits.credits_app, name="credits")  # ledger hook: corral credits / usage
app.command("usage")(credits.usage)
app.add_typer(tenancy.users_app, name="users")  # users, tokens, members, audit: corral.cli.tenancy
app.add_typer(tenancy.tokens_app, name="tokens")
app.add_typer(tenancy.members_app, name="members")
app.add_typer(secrets_app, name="secrets")  # issue 13: named secrets for env (corral.cli.secrets)
app.command("audit")(tenancy.audit)
app.command("whoami")(tenancy.whoami)
app.command("agent")(agent_command)  # issue 11: corral on every host (corral.agent)
app.add_typer(agent.agent_tokens_app, name="agent-tokens")
app.command("offers")(offers.offers)  # issue 11: what providers can rent (corral.providers)
app.command("deliveries")(_webhooks.deliveries)  # issue 13: notify's log (corral.cli.webhooks)
app.command("exec")(_exec.exec_command)  # issue 13: run beside a worker (corral.cli.exec)
app.command("port-forward")(_port_forward.port_forward)  # issue 13 (corral.cli.port_forward)
app.command("ssh")(_ssh.ssh)  # issue 13: a shell in a worker (corral.cli.ssh)
for _command in (workloads.submit, workloads.ls, workloads.describe, workloads.logs,
                 workloads.cancel, workloads.why, cluster.queues, cluster.nodes, cluster.providers,
                 cluster.cordon, cluster.uncordon, cluster.top, workloads.scale,
                 workloads.update):
    app.command(_command.__name__)(_command)
# `corral providers` lists as before; its subcommands add, rm and ls renting providers
app.add_typer(offers.providers_app, name="providers")
app.command("login")(contexts.login)  # saved servers and tokens: corral.cli.contexts
app.add_typer(contexts.context_app, name="context")


def _version(value: bool) -> None:
    if value:
        from importlib import metadata  # here, not at import: ~50 ms of every command's start

        try:
            typer.echo(f"corral {metadata.version('corral')}")
        except metadata.PackageNotFoundError:  # run from a source tree that was not installed
            typer.echo("corral (not installed: no version)")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_version,
                                          help="print corral's version and exit")] = False,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", envvar="CORRAL_DATA_DIR", help="the data dir of a `corral up --data-dir "
        "DIR` here: client commands reach its server with its admin token (after --url and "
        "CORRAL_URL, before the current context); `corral login --data-dir DIR` saves it")
    ] = None,
) -> None:
    """corral: one pool of GPUs, scheduled fairly and densely, metered to the cent."""
    if data_dir is not None:  # read where CORRAL_DATA_DIR is: corral.sdk.config.resolve, up
        os.environ["CORRAL_DATA_DIR"] = str(data_dir)


if __name__ == "__main__":  # pragma: no cover
    app()
