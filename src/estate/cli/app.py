"""The `estate` entry point: builds the command tree and maps errors to exit codes in one place.

Exit codes: 0 ok, 1 the operation failed, 2 bad input (nothing was changed).
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated

import typer

from estate.cli import (
    access_cmds,
    deploy_cmds,
    estate_cmds,
    guardrail_cmds,
    inventory,
    rollout_cmds,
    server_cmd,
    worker_cmds,
)
from estate.cli.context import Context, get_context, set_context
from estate.cli.output import Format, report_error, stderr
from estate.errors import EstateError

app = typer.Typer(
    name="estate",
    help="Roll out Terraform/OpenTofu module updates across an estate of environments in controlled waves.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False) -> None:
    """Estate: promote module versions through ephemeral, dev, staging and production with guardrails.

    Data lives in $ESTATE_HOME (default ./.estate) or the database named by $ESTATE_DATABASE_URL.
    """
    get_context().debug = debug


estate_cmds.register(app)
inventory.register(app)
deploy_cmds.register(app)
rollout_cmds.register(app)
access_cmds.register(app)
guardrail_cmds.register(app)
server_cmd.register(app)
worker_cmds.register(app)


def _requested_format(argv: list[str]) -> Format | None:
    for i, arg in enumerate(argv):
        if arg in ("-o", "--output") and i + 1 < len(argv):
            return Format.JSON if argv[i + 1] == "json" else None
        if arg in ("--output=json", "-ojson"):
            return Format.JSON
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of raising (used by the console script and tests)."""
    args = sys.argv[1:] if argv is None else argv
    ctx = Context()
    set_context(ctx)
    command = typer.main.get_command(app)
    try:
        # Click handles usage errors itself (exit 2) and exits via SystemExit; ours propagate to here.
        command.main(args=args, prog_name="estate", standalone_mode=True)
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except EstateError as exc:
        if ctx.debug:
            traceback.print_exc()
        report_error(exc, _requested_format(args))
        return exc.exit_code
    except KeyboardInterrupt:
        stderr.print("interrupted")
        return 130
    except Exception as exc:  # a bug: say so plainly, details with --debug
        if ctx.debug:
            traceback.print_exc()
        stderr.print(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", markup=False)
        return 1
    finally:
        ctx.close()


def run() -> None:
    sys.exit(main())
