"""The `zns` command line: parse, call, exit code."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Zalo ZNS Journey worker.")


@app.command()
def demo() -> None:
    """Run the demo: sandbox Zalo + worker + a sample journey set."""
    typer.echo("not yet: the demo arrives with the journey pipeline (issue #3)")


def main() -> None:
    """Console-script entry point."""
    app()
