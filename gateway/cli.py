"""The ``warden`` command line."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from policies.yamlio import YamlModelError

app = typer.Typer(help="Warden: a safety-guarded, audited, OpenAI-compatible LLM gateway.", no_args_is_help=True)
policy_app = typer.Typer(help="Validate, compare and replay policy files.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="Gateway config file (or $WARDEN_CONFIG).")]


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the gateway."""
    import uvicorn

    from gateway.app import create_app
    from gateway.config import config_summary, load_config

    _setup_logging(log_level)
    try:
        cfg = load_config(config)
        application = create_app(cfg)
    except YamlModelError as exc:
        _fail(f"invalid configuration:\n{exc}")
        return
    logging.getLogger("warden").info("starting: %s", config_summary(cfg))
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False, lifespan="on")


@app.command()
def simulator(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
) -> None:
    """Run the built-in OpenAI-compatible upstream simulator (no API key needed)."""
    from gateway.simulator import run

    run(host, port)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8080,
    upstream_port: Annotated[int, typer.Option(help="Built-in upstream port.")] = 8081,
    dashboard_port: Annotated[int, typer.Option(help="Dashboard port (0: no dashboard).")] = 8501,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its config and database.")] = Path("var/demo"),
) -> None:
    """Gateway + built-in upstream (+ dashboard) on SQLite with the default policy."""
    from gateway.demo import run_demo

    run_demo(port=port, upstream_port=upstream_port, dashboard_port=dashboard_port, workdir=workdir)


@policy_app.command("validate")
def policy_validate(files: Annotated[list[Path], typer.Argument(help="Policy YAML files.")]) -> None:
    """Check policy files; print every error with its line. Exit 1 if any is invalid."""
    from policies.loader import load_policy

    bad = 0
    for file in files:
        try:
            compiled = load_policy(file)
        except YamlModelError as exc:
            bad += 1
            for err in exc.errors:
                typer.secho(str(err), err=True, fg=typer.colors.RED)
            continue
        checks = len(compiled.checks)
        typer.echo(f"{file}: ok (policy {compiled.name!r}, version {compiled.version}, {checks} checks)")
    raise typer.Exit(1 if bad else 0)


@policy_app.command("diff")
def policy_diff(old: Path, new: Path) -> None:
    """Show what changed between two policy files (text diff of the files, then versions)."""
    import difflib

    from policies.loader import load_policy

    for file in (old, new):
        try:
            load_policy(file)
        except YamlModelError as exc:
            _fail(str(exc), 1)
    a = old.read_text(encoding="utf-8").splitlines(keepends=True)
    b = new.read_text(encoding="utf-8").splitlines(keepends=True)
    sys.stdout.writelines(difflib.unified_diff(a, b, str(old), str(new)))


def main() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    app()


if __name__ == "__main__":
    main()
