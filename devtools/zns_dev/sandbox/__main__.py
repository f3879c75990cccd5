"""`python -m zns_dev.sandbox`: the `zns sandbox` options, or `--config-stdin` (a JSON config)."""

from __future__ import annotations

import sys

import typer

from zns_dev.sandbox.command import sandbox_command
from zns_dev.sandbox.config import SandboxConfig
from zns_dev.sandbox.server import serve


def main(argv: list[str] | None = None) -> None:
    """Serve the JSON config read from stdin (how `running_sandbox` starts us) or parse options."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--config-stdin"]:
        serve(SandboxConfig.model_validate_json(sys.stdin.read()))
        return
    app = typer.Typer(add_completion=False)
    app.command()(sandbox_command)
    app(args=args, prog_name="python -m zns_dev.sandbox")


if __name__ == "__main__":
    main()
