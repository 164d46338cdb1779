"""`estate token create|list|revoke`: API tokens for the server's users (and the CLI in remote mode).

The first admin token is created here in embedded mode, on the server's machine (direct store access), as
`kubeadm` and `vault operator init` bootstrap: `estate token create --user root`.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from estate.app import Caller
from estate.cli import credentials
from estate.cli.context import get_context
from estate.cli.output import ActorOpt, Format, OutputOpt, colored, emit, parse_span, stderr, stdout
from estate.cli.remote import RemoteApp

token_app = typer.Typer(help="API tokens: create (shown once), list (never the secret), revoke.", no_args_is_help=True)


@token_app.command("create")
def create(
    user: Annotated[str, typer.Option(help="Whom the token authenticates.")],
    groups: Annotated[str, typer.Option(help="Comma-separated groups (access bindings may name group:X).")] = "",
    expires: Annotated[str | None, typer.Option(help="Lifetime, e.g. 30d or 12h (default: until revoked).")] = None,
    description: Annotated[str, typer.Option(help="What the token is for (shown by `token list`).")] = "",
    actor: ActorOpt = None,
    output: OutputOpt = Format.TEXT,
) -> None:
    """Create a token for USER and print it once (Estate keeps only a hash).

    Example: estate token create --user bob --groups approvers --expires 90d
    """
    ctx = get_context()
    issued = ctx.app.identity.create_token(
        ctx.caller(actor),
        user,
        groups=[g.strip() for g in groups.split(",") if g.strip()],
        expires_in=parse_span("--expires", expires) if expires else None,
        description=description,
    )

    def render() -> None:
        stdout.print(issued.token)
        stderr.print(f"token {issued.id} for {escape(issued.user)}: store it now, it is not shown again")

    emit(output, issued, render)


@token_app.command("list")
def list_cmd(output: OutputOpt = Format.TEXT) -> None:
    """Tokens with their user, groups, state and last use (never the secret)."""
    ctx = get_context()
    found = ctx.app.identity.list_tokens(ctx.caller(None))

    def render() -> None:
        table = Table("id", "user", "groups", "state", "expires", "last used", "description", box=None)
        for t in found:
            table.add_row(
                t.id,
                escape(t.user),
                escape(", ".join(t.groups)),
                colored(t.state),
                f"{t.expires_at:%Y-%m-%d}" if t.expires_at else "",
                f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never",
                escape(t.description),
            )
        stdout.print(table)

    emit(output, found, render)


@token_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID")], actor: ActorOpt = None, output: OutputOpt = Format.TEXT
) -> None:
    """Revoke a token; the very next request that presents it is refused."""
    ctx = get_context()
    view = ctx.app.identity.revoke_token(ctx.caller(actor), token_id)
    emit(output, view, lambda: stdout.print(f"token {view.id} of {escape(view.user)} is {view.state}"))


def login(
    url: Annotated[str, typer.Option(help="The server, e.g. https://estate.example:8443.")],
    token_stdin: Annotated[bool, typer.Option("--token-stdin", help="Read the token from stdin.")] = False,
) -> None:
    """Store URL and a token for the CLI (0600, in your config dir); every command then talks to that server.

    The token comes from an admin (`estate token create --user YOU`); ESTATE_TOKEN overrides the stored one.
    """
    token = sys.stdin.readline().strip() if token_stdin else typer.prompt("token", hide_input=True).strip()
    me = RemoteApp(url, token, os.environ)
    try:
        who = me.identity.whoami(Caller("(token)", auth="token"))
    finally:
        me.close()
    where = credentials.save(os.environ, url, token)
    roles = ", ".join(f"{g.role} ({g.scope})" for g in who.grants) or "no role yet"
    stdout.print(f"logged in to {escape(url)} as [bold]{escape(who.subject)}[/]: {escape(roles)}")
    stderr.print(f"[dim]stored in {where}[/]")


def logout() -> None:
    """Forget the stored server and token: the CLI is embedded again."""
    stdout.print("logged out" if credentials.forget(os.environ) else "not logged in")


def whoami(output: OutputOpt = Format.TEXT) -> None:
    """Who the CLI acts as: the token's subject (server), or the local account (embedded)."""
    ctx = get_context()
    view = ctx.app.identity.whoami(ctx.caller(None))

    def render() -> None:
        stdout.print(
            f"{escape(view.subject)} ({view.auth})" + (f", groups {', '.join(view.groups)}" if view.groups else "")
        )
        for grant in view.grants:
            stdout.print(f"  {grant.role}: {escape(grant.scope)}")

    emit(output, view, render)


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
    app.command()(login)
    app.command()(logout)
    app.command()(whoami)
