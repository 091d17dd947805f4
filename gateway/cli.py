"""The ``warden`` command line."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from policies.yamlio import YamlModelError

if TYPE_CHECKING:
    from audit.read.record_filter import RecordFilter

app = typer.Typer(help="Warden: a safety-guarded, audited, OpenAI-compatible LLM gateway.", no_args_is_help=True)
policy_app = typer.Typer(help="Validate, compare and replay policy files.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="Gateway config file (or $WARDEN_CONFIG).")]
#: the record filters ``audit export`` and ``policy replay`` share (``audit.read.record_filter.RecordFilter``,
#: the dashboard's filter too)
SinceOpt = Annotated[datetime | None, typer.Option(help="Only records from this time on.")]
UntilOpt = Annotated[datetime | None, typer.Option(help="Only records before this time.")]
TenantOpt = Annotated[str | None, typer.Option(help="Only this tenant.")]
ModelOpt = Annotated[str | None, typer.Option(help="Only this requested model.")]
VerdictOpt = Annotated[str | None, typer.Option(help="pass, flag, redact, block or error.")]
CheckOpt = Annotated[str | None, typer.Option(help="Only requests where this check acted.")]
PolicyVersionOpt = Annotated[str | None, typer.Option(help="Only this policy version.")]
TextOpt = Annotated[
    str | None, typer.Option(help="Text in the stored prompt or answer (ignoring case; % and _ are literal).")
]


def _record_filter(
    since: datetime | None,
    until: datetime | None,
    tenant: str | None,
    model: str | None,
    verdict: str | None,
    check: str | None,
    policy_version: str | None,
    text: str | None,
) -> RecordFilter:
    """The filter options as the one ``RecordFilter`` the dashboard reads with too."""
    from audit.read.record_filter import RecordFilter
    from audit.record import Verdict

    if verdict is not None and verdict not in {v.value for v in Verdict}:
        _fail(f"--verdict must be one of {', '.join(v.value for v in Verdict)}, not {verdict!r}")
    return RecordFilter(
        start=since,
        end=until,
        tenants=(tenant,) if tenant else (),
        models=(model,) if model else (),
        verdicts=(verdict,) if verdict else (),
        checks=(check,) if check else (),
        policy_versions=(policy_version,) if policy_version else (),
        text=text or "",
    )


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _fail(message: str, code: int = 2) -> None:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


@contextlib.contextmanager
def _counting(label: str, *, show: bool = True) -> Iterator[Callable[[int], None] | None]:
    """A spinner and a running count on stderr while a long audit command works, when stderr is
    a terminal (never in a pipe or a log); yields the callback to feed, or None."""
    if not (show and sys.stderr.isatty()):
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(), TextColumn("{task.completed} " + label), console=Console(stderr=True), transient=True
    ) as bar:
        task = bar.add_task(label, total=None)
        yield lambda n: bar.update(task, completed=n)


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
    shape: Annotated[
        str, typer.Option(help="Whose chunk bytes streams copy: openai, vllm, ollama, llamacpp, tgi or spaced.")
    ] = "openai",
) -> None:
    """Run the built-in OpenAI-compatible upstream simulator (no API key needed)."""
    from gateway.simulator import run
    from gateway.simulator.shapes import SHAPES

    if shape not in SHAPES:
        _fail(f"unknown --shape {shape!r}; choose one of: {', '.join(SHAPES)}")
        return
    run(host, port, shape=shape)


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


@policy_app.command("replay")
def policy_replay(
    file: Annotated[Path, typer.Argument(help="The edited policy file.")],
    config: ConfigOpt = None,
    against: Annotated[
        Path | None,
        typer.Option(help="The running policy to compare with (default: the config's policy of the same name)."),
    ] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    tenant: TenantOpt = None,
    model: ModelOpt = None,
    verdict: VerdictOpt = None,
    check: CheckOpt = None,
    policy_version: PolicyVersionOpt = None,
    text: TextOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Requests to replay, newest first.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """The dashboard's replay: run the input and output checks of the running and the edited
    policy over stored requests, and list the verdicts that would change."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from dashboard.data import replay_inputs
    from dashboard.replay import replay
    from policies.loader import load_policy

    filters = _record_filter(since, until, tenant, model, verdict, check, policy_version, text)
    try:
        edited = load_policy(file)
    except YamlModelError as exc:
        _fail(f"invalid policy {file}:\n{exc}")
        raise AssertionError from exc  # unreachable: _fail exits
    running_path = against if against is not None else _running_policy_path(config, edited.name)
    try:
        running = load_policy(running_path)
    except YamlModelError as exc:
        _fail(f"invalid running policy {running_path}:\n{exc}")
        raise AssertionError from exc
    from sqlalchemy.exc import SQLAlchemyError

    try:
        items = replay_inputs(_engine(config), filters, limit=limit)
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        _fail(f"cannot read the audit database ({reason}); `warden db upgrade` creates its tables")
        raise AssertionError from exc
    with Progress(
        TextColumn("replay"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),  # stdout is the result
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("requests", total=len(items))
        results = replay(edited, running, items, lambda done, _total: bar.update(task, completed=done))
    changed = [r for r in results if r.changed]
    stricter = sum(r.stricter for r in changed)
    if as_json:
        body = {
            "running": {"name": running.name, "version": running.version, "path": str(running_path)},
            "edited": {"name": edited.name, "version": edited.version, "path": str(file)},
            "replayed": len(results),
            "changed": len(changed),
            "stricter": stricter,
            "looser": len(changed) - stricter,
            "changes": [_replay_row(r) for r in changed],
        }
        typer.echo(json.dumps(body, indent=2))
        return
    typer.echo(
        f"running {running.name} {running.version} ({running_path}) -> edited {edited.name} {edited.version} ({file})"
    )
    if not results:
        typer.echo("no stored request matches (only requests whose text audit.store_text kept can be replayed)")
        return
    typer.echo(
        f"{len(results)} requests replayed: {len(changed)} verdicts change "
        f"({stricter} stricter, {len(changed) - stricter} looser)"
    )
    if changed:
        _print_replay_table(changed)


def _running_policy_path(config: str | None, name: str) -> Path:
    """The config's policy file named ``name``, else its default policy."""
    from gateway.config import load_config
    from policies.loader import load_policy

    try:
        cfg = load_config(config)
    except YamlModelError as exc:
        _fail(f"invalid configuration:\n{exc}")
        raise AssertionError from exc
    for path in sorted(cfg.policy_paths()):
        try:
            if load_policy(path).name == name:
                return path
        except YamlModelError:
            continue  # an invalid file is not the running policy of anything
    return cfg.resolve(cfg.policy)


def _replay_row(r: Any) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "recorded": r.stored_verdict,
        "input": {"before": r.before[0], "after": r.after[0]},
        "output": {"before": r.before[1], "after": r.after[1]},
        "stricter": r.stricter,
        "decided_by": r.decided_by,
        "score": r.score,
        "threshold": r.threshold,
        "fired": list(r.fired),
        "monitor": list(r.monitor),
        "prompt": r.snippet,
    }


def _print_replay_table(changed: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Verdicts that change")
    for column in (
        "request id",
        "recorded",
        "input",
        "output",
        "decided by",
        "score / threshold",
        "edited policy fires",
        "prompt",
    ):
        table.add_column(column, overflow="fold")
    for r in changed:
        score = "" if r.score is None else f"{r.score:.2f}" + ("" if r.threshold is None else f" / {r.threshold:.2f}")
        table.add_row(
            r.request_id,
            r.stored_verdict,
            f"{r.before[0]} → {r.after[0]}",
            f"{r.before[1]} → {r.after[1]}",
            r.decided_by or "",
            score,
            "; ".join(r.fired),
            " ".join((r.snippet or "").split())[:80],
        )
    Console().print(table)


audit_app = typer.Typer(help="Verify, export, prune and replay the audit trail.", no_args_is_help=True)
db_app = typer.Typer(help="The audit database schema.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys in the gateway config.", no_args_is_help=True)
users_app = typer.Typer(help="Dashboard users.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")


def _database_url(config: str | None) -> str:
    from gateway.config import DATABASE_ENV, load_config

    if config is None and os.environ.get(DATABASE_ENV) and not os.environ.get("WARDEN_CONFIG"):
        return os.environ[DATABASE_ENV]
    try:
        return load_config(config).resolved_database_url()
    except YamlModelError as exc:
        _fail(f"invalid configuration:\n{exc}")
        raise AssertionError from exc  # unreachable: _fail exits


def _engine(config: str | None) -> Any:
    from audit.db import make_engine

    return make_engine(_database_url(config))


@db_app.command("upgrade")
def db_upgrade(config: ConfigOpt = None) -> None:
    """Create or upgrade the audit tables (Alembic migrations)."""
    from audit.db import upgrade

    url = _database_url(config)
    upgrade(url)
    typer.echo(f"audit database is up to date ({url.split('@')[-1]})")


def _load_config_quiet(config: str | None) -> Any:
    """The gateway config if one is named (``--config`` or ``$WARDEN_CONFIG``), else None."""
    from gateway.config import load_config

    if config is None and not os.environ.get("WARDEN_CONFIG"):
        return None
    try:
        return load_config(config)
    except YamlModelError as exc:
        _fail(f"invalid configuration:\n{exc}")
        raise AssertionError from exc  # unreachable: _fail exits


@audit_app.command("verify")
def audit_verify(
    config: ConfigOpt = None,
    anchors: Annotated[
        str | None, typer.Option(help="Folder, file or http(s) URL of published chain heads (default: the config's).")
    ] = None,
    public_key: Annotated[
        str | None, typer.Option(help="Anchor public key, base64 or a file (default: audit.anchors.public_key).")
    ] = None,
) -> None:
    """Check the hash chains (and, with anchors, that no published head was cut off or rewritten)."""
    from audit.read.verify import verify

    cfg = _load_config_quiet(config)
    settings = cfg.audit.anchors if cfg is not None else None
    if anchors is None and settings is not None and settings.dir:
        anchors = str(cfg.resolve(settings.dir))
    engine = _engine(config)
    with _counting("records checked") as progress:
        result = verify(engine, progress=progress)
    failed = not result.ok
    for problem in result.problems:
        where = f"record {problem.record_id}" if problem.record_id else f"chain {problem.chain_id}"
        typer.secho(
            f"{problem.kind.value}: {where} (seq {problem.seq}): {problem.message}", err=True, fg=typer.colors.RED
        )
    if result.erased:
        typer.echo(f"erased: {result.erased} records had their texts erased ({', '.join(result.erasures)})")
    if anchors is None:
        typer.secho(
            "note: no anchors given (--anchors DIR|URL): truncation of a chain's newest records cannot be "
            "detected, since the chain's head is stored in the same database",
            err=True,
            fg=typer.colors.YELLOW,
        )
    else:
        failed |= _check_anchors(engine, anchors, public_key or _public_key_of(cfg))
    if failed:
        typer.secho(f"FAILED: first bad record {result.first_bad_id}", err=True, fg=typer.colors.RED)
        _alert_verify_failed(cfg, [f"{p.kind.value}: {p.message}" for p in result.problems])
        raise typer.Exit(1)
    typer.echo(
        f"ok: {result.records_checked} records and {result.reviews_checked} reviews in "
        f"{result.chains_checked} chains verified"
    )


def _public_key_of(cfg: Any) -> str | None:
    """The anchors' public key from the config, or (if only the key file is named) from it."""
    settings = cfg.audit.anchors if cfg is not None else None
    if settings is None:
        return None
    if settings.public_key:
        return str(settings.public_key)
    from audit.read.anchors import load_private_key, public_key_text

    try:
        return public_key_text(load_private_key(cfg.resolve(settings.key_file)).public_key())
    except (OSError, ValueError):
        return None


def _alert_verify_failed(cfg: Any, problems: list[str]) -> None:
    """Send the policy's ``verify_failed`` alert, if it has one (verify usually runs from cron)."""
    if cfg is None:
        return
    from audit.write.alerts import send_verify_failed
    from policies.loader import load_policy

    try:
        policy = load_policy(cfg.resolve(cfg.policy)).policy
        if policy.alerts is not None:
            send_verify_failed(policy.alerts, problems or ["anchor check failed"], policy.name)
    except Exception as exc:  # the failure itself is already reported; the alert is extra
        typer.secho(f"could not send the verify_failed alert: {exc}", err=True, fg=typer.colors.YELLOW)


def _check_anchors(engine: Any, source: str, public_key: str | None) -> bool:
    """Print the anchor check; True if it failed."""
    from audit.read.anchors import check_anchors, load_public_key, read_anchors

    if not public_key:
        _fail("checking anchors needs their public key: --public-key or audit.anchors.public_key in the config")
    try:
        found = read_anchors(source, load_public_key(str(public_key)))
    except (OSError, ValueError) as exc:
        _fail(f"cannot read anchors from {source}: {exc}")
        raise AssertionError from exc
    except Exception as exc:  # httpx errors for a URL
        _fail(f"cannot read anchors from {source}: {type(exc).__name__}: {exc}")
        raise AssertionError from exc
    check = check_anchors(engine, found)
    for problem in check.problems:
        typer.secho(f"{problem.kind.value}: {problem.message}", err=True, fg=typer.colors.RED)
    for note in check.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(
        f"anchors: {check.anchors_read} signed heads from {check.sources} sources checked "
        f"for {check.chains_anchored} chains: {'ok' if check.ok else 'FAILED'}"
    )
    if not found.anchors and check.ok:
        typer.secho(f"no anchors found at {source}", err=True, fg=typer.colors.YELLOW)
    return not check.ok


@audit_app.command("anchor-key")
def audit_anchor_key(
    out: Annotated[Path, typer.Option("--out", help="Where to write the private key (PEM, mode 0600).")],
) -> None:
    """Make the Ed25519 key that signs published chain heads; prints the public key for the config."""
    from audit.read.anchors import generate_key

    try:
        public = generate_key(out)
    except FileExistsError:
        _fail(f"{out} exists: a signing key is never overwritten")
        return
    typer.echo(f"private key written to {out} (keep it outside the database; back it up)", err=True)
    typer.echo(f"public key written to {out}.pub; put it in the config:", err=True)
    typer.echo(f"audit:\n  anchors:\n    key_file: {out}\n    public_key: {public}")


@audit_app.command("anchor")
def audit_anchor(config: ConfigOpt = None) -> None:
    """Sign and publish every chain's head now (as the gateway does at its interval)."""
    from audit.read.anchors import AnchorPublisher

    cfg = _load_config_quiet(config)
    if cfg is None or cfg.audit.anchors is None:
        _fail("no audit.anchors in the config")
        return
    publisher = AnchorPublisher.from_settings(_engine(config), cfg.audit.anchors, cfg.resolve)
    typer.echo(f"{publisher.publish()} chain heads published")


@audit_app.command("prune")
def audit_prune(
    before: Annotated[datetime, typer.Option(help="Remove records that started before this date (UTC).")],
    config: ConfigOpt = None,
) -> None:
    """Delete old records, leaving a checkpoint so that verify still passes."""
    from audit.read.prune import prune

    with _counting("records deleted") as progress:
        result = prune(_engine(config), before, progress=progress)
    typer.echo(str(result))


@audit_app.command("erase")
def audit_erase(
    config: ConfigOpt = None,
    request: Annotated[str | None, typer.Option("--request", help="Erase this request's texts.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Erase the texts of every record of this tenant.")] = None,
    subject_fingerprint: Annotated[
        str | None, typer.Option(help="Erase every record where a value with this fingerprint was found.")
    ] = None,
    before: Annotated[datetime | None, typer.Option(help="Only records that started before this (UTC).")] = None,
    actor: Annotated[str | None, typer.Option(help="Who asks (recorded; default: $USER).")] = None,
) -> None:
    """Erase stored texts (and their fingerprints); the chains still verify, and the erasure
    is itself a chained record."""
    from audit.read.erasure import erase

    if sum(x is not None for x in (request, tenant, subject_fingerprint)) != 1:
        _fail("give exactly one of --request, --tenant or --subject-fingerprint")
    who = actor or os.environ.get("USER") or "unknown"
    result = erase(
        _engine(config),
        actor=who,
        request_id=request,
        tenant=tenant,
        subject_fingerprint=subject_fingerprint,
        before=before,
    )
    typer.echo(f"erased the texts of {result.erased} records (erasure records: {', '.join(result.erasure_ids) or '-'})")
    if result.already_erased:
        typer.echo(f"{result.already_erased} matching records were erased before")
    if result.not_erasable:
        typer.secho(
            f"{result.not_erasable} matching records predate commitments (written before migration "
            "0005_commitments): their hash covers the text itself, so they are left as they are; "
            "`warden audit prune` removes them whole",
            err=True,
            fg=typer.colors.YELLOW,
        )
    if request is not None and not (result.erased or result.already_erased or result.not_erasable):
        _fail(f"no record {request!r}", 1)


@audit_app.command("retention")
def audit_retention(config: ConfigOpt = None) -> None:
    """Apply audit.retention_days (erase texts) and audit.prune_days (prune) once, now."""
    from audit.read.erasure import apply_retention

    cfg = _load_config_quiet(config)
    if cfg is None or (cfg.audit.retention_days is None and cfg.audit.prune_days is None):
        _fail("no audit.retention_days or audit.prune_days in the config")
        return
    result = apply_retention(_engine(config), cfg.audit.retention_days, prune_days=cfg.audit.prune_days)
    typer.echo(f"retention: erased the texts of {result.erased} records")


@audit_app.command("export")
def audit_export(
    config: ConfigOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl, csv or ocsf (OCSF API Activity events, JSONL).")
    ] = "jsonl",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    tenant: TenantOpt = None,
    model: ModelOpt = None,
    verdict: VerdictOpt = None,
    check: CheckOpt = None,
    policy_version: PolicyVersionOpt = None,
    text: TextOpt = None,
) -> None:
    """Stream records with their steps, in the reasoning-path shape, as JSONL or CSV."""
    from audit.read.export import write_csv, write_jsonl

    if fmt not in ("jsonl", "csv", "ocsf"):
        _fail("--format must be jsonl, csv or ocsf")
    filters = _record_filter(since, until, tenant, model, verdict, check, policy_version, text)
    from audit.read.siem import write_ocsf

    writer = {"jsonl": write_jsonl, "csv": write_csv, "ocsf": write_ocsf}[fmt]
    engine = _engine(config)
    out = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        # Only when writing a file: on stdout the records are the output.
        with _counting("records", show=output is not None) as progress:
            n = writer(engine, out, filters, progress=progress)
    finally:
        if output is not None:
            out.close()
    if output is not None:
        typer.echo(f"{n} records written to {output}", err=True)


@audit_app.command("report")
def audit_report(
    since: Annotated[datetime, typer.Option(help="Start of the period (UTC).")],
    until: Annotated[datetime, typer.Option(help="End of the period, exclusive (UTC).")],
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="html or pdf.")] = "html",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: report.FORMAT).")
    ] = None,
    anchors: Annotated[
        str | None, typer.Option(help="Folder, file or URL of published chain heads (default: the config's).")
    ] = None,
    public_key: Annotated[str | None, typer.Option(help="Anchor public key (default: the config's).")] = None,
) -> None:
    """The auditor's report for a period: volume, blocks and redactions, rulings and open items,
    policy versions and who changed them, and the integrity result with the anchors checked."""
    from audit.read.anchors import check_anchors, load_public_key, read_anchors
    from audit.read.report import build_report
    from audit.read.report_render import render_html, render_pdf

    if fmt not in ("html", "pdf"):
        _fail("--format must be html or pdf")
    cfg = _load_config_quiet(config)
    settings = cfg.audit.anchors if cfg is not None else None
    if anchors is None and settings is not None and settings.dir:
        anchors = str(cfg.resolve(settings.dir))
    key_text = public_key or _public_key_of(cfg)
    engine = _engine(config)
    check = None
    if anchors is not None:
        if not key_text:
            _fail("checking anchors needs their public key: --public-key or audit.anchors.public_key")
        try:
            check = check_anchors(engine, read_anchors(anchors, load_public_key(str(key_text))))
        except (OSError, ValueError) as exc:
            _fail(f"cannot read anchors from {anchors}: {exc}")
    try:
        rep = build_report(engine, since, until, anchors=check, anchors_source=anchors)
    except ValueError as exc:
        _fail(str(exc))
        return
    out = output or Path(f"report.{fmt}")
    if fmt == "html":
        out.write_text(render_html(rep), encoding="utf-8")
    else:
        render_pdf(rep, out)
    ok = rep.integrity is not None and rep.integrity.ok
    typer.echo(
        f"{out}: {rep.total} requests, {rep.open_items} open items, integrity {'verified' if ok else 'NOT verified'}"
    )


@audit_app.command("replay-spool")
def audit_replay_spool(
    spool: Annotated[Path | None, typer.Argument(help="A spool file or folder (default: the config's).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Write spooled records (kept while the database was down) into the database, once."""
    from audit.write.writer import replay_spool
    from gateway.config import load_config

    path = spool
    if path is None:
        cfg = load_config(config)
        path = cfg.resolve(cfg.audit.spool_dir)
    with _counting("spooled records replayed") as progress:
        result = replay_spool(_database_url(config), path, progress=progress)
    typer.echo(str(result))


@audit_app.command("writer")
def audit_writer(
    from_nats: Annotated[
        str | None, typer.Option("--from-nats", help="NATS URL (default: the config's audit.broker.url).")
    ] = None,
    database: Annotated[
        str | None, typer.Option(help="Database URL (default: the config's, or $WARDEN_DATABASE_URL).")
    ] = None,
    chain_id: Annotated[str | None, typer.Option(help="Continue this chain (default: a new one).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Records per transaction.")] = 500,
    until_idle: Annotated[bool, typer.Option(help="Stop once the stream is empty.")] = False,
    ack_wait_s: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds before an unacknowledged record goes to another writer (default 30)."),
    ] = None,
    dead_letter_dir: Annotated[
        Path | None, typer.Option(help="Where refused records are kept (default: the config's spool folder).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Drain the broker's audit stream into the database, in chain order, exactly once."""
    import asyncio
    import signal

    from pydantic import ValidationError

    from audit.db import SchemaOutOfDate, ensure_schema, make_engine
    from audit.settings import BrokerSettings
    from audit.write.broker import BROKER_ERRORS
    from audit.write.drain import Drain

    cfg = _load_config_quiet(config)
    base = cfg.audit.broker if cfg is not None else None
    url = from_nats or (base.url if base is not None else None)
    if url is None:
        _fail("no broker: give --from-nats nats://HOST:PORT or set audit.broker in the config")
    try:
        overrides = {"url": url, **({"ack_wait_s": ack_wait_s} if ack_wait_s is not None else {})}
        settings = BrokerSettings(**{**(base.model_dump() if base is not None else {}), **overrides})
    except ValidationError as exc:
        _fail(f"--from-nats {url!r}: {exc.errors()[0]['msg']}")
        raise AssertionError from exc  # unreachable: _fail exits
    engine = make_engine(database or _database_url(config))
    try:
        ensure_schema(engine)
    except SchemaOutOfDate as exc:
        _fail(str(exc))
    except Exception as exc:
        _fail(f"audit database unusable: {exc}")
    folder = dead_letter_dir or (cfg.resolve(cfg.audit.spool_dir) if cfg is not None else Path("warden-spool"))
    drain = Drain(engine, settings, dead_letter_dir=folder, chain_id=chain_id, batch_size=batch_size)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # from here on SIGTERM stops it cleanly (what a supervisor, or a test, may wait for)
        typer.echo(f"audit writer: chain {drain.requests.chain_id}, draining {settings.stream} from {settings.url}")
        await drain.run(stop, until_idle=until_idle)

    try:
        asyncio.run(main())
    except BROKER_ERRORS as exc:
        _fail(f"audit broker {settings.url} unreachable: {type(exc).__name__}: {exc}")
    finally:
        engine.dispose()
    s = drain.stats
    typer.echo(
        json.dumps({"chain_id": drain.requests.chain_id, "batches": s.batches, "committed": s.committed,
                    "duplicates": s.duplicates, "rejected": s.rejected})
    )  # fmt: skip


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to.")],
    config: ConfigOpt = None,
    role: Annotated[str, typer.Option(help="client, reviewer or admin.")] = "client",
    key_id: Annotated[str | None, typer.Option("--id", help="A name for the key (default: random).")] = None,
    policy: Annotated[
        str | None, typer.Option(help="A policy file (config) or policy name (--db) this key runs under.")
    ] = None,
    rpm: Annotated[int | None, typer.Option(help="Requests per minute (--db).", min=1)] = None,
    tpm: Annotated[int | None, typer.Option(help="Tokens per minute (--db).", min=1)] = None,
    db: Annotated[
        bool, typer.Option("--db", help="Store the key in the database (every replica, no file edit).")
    ] = False,
) -> None:
    """Make a new key, store only its SHA-256 (in the config, or with --db in the database), print the key once."""
    if db:
        from audit import fleet

        cfg = _load(config)
        try:
            secret, rec = fleet.create_key(
                _engine(config),
                tenant=tenant,
                role=role,
                policy=policy,
                rpm=rpm,
                tpm=tpm,
                key_id=key_id,
                created_by=_cli_user(),
                taken_ids=frozenset(k.key_id for k in cfg.keys),
                taken_digests=frozenset(k.digest for k in cfg.keys),
            )
        except fleet.FleetError as exc:
            _fail(str(exc), 1)
            raise AssertionError from exc
        _record_cli_action(
            config, "key.create", {"key_id": rec.key_id, "tenant": rec.tenant, "role": rec.role, "policy": rec.policy}
        )
        typer.echo(secret)
        typer.echo(f"key id {rec.key_id} stored in the database; every replica accepts it within seconds", err=True)
        return
    if rpm is not None or tpm is not None:
        _fail("--rpm / --tpm need --db (or edit the config file)")
    from gateway.keyfile import create_key

    try:
        key, kid = create_key(_config_path(config), tenant=tenant, role=role, key_id=key_id, policy=policy)
    except ValueError as exc:
        _fail(str(exc), 1)
        raise AssertionError from exc
    typer.echo(key)
    typer.echo(f"key id {kid} added to {_config_path(config)}; running gateways pick it up within seconds", err=True)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    config: ConfigOpt = None,
    db: Annotated[
        bool, typer.Option("--db", help="Revoke in the database: a database key, or a config key on every replica.")
    ] = False,
) -> None:
    """Revoke a key by its id: remove it from the config, or with --db revoke it fleet-wide."""
    if db:
        from audit import fleet

        cfg = _load(config)
        known = next((k for k in cfg.keys if k.key_id == key_id), None)
        config_key = (known.digest, known.tenant, known.role) if known else None
        rec = fleet.revoke_key(_engine(config), key_id, by=_cli_user(), config_key=config_key)
        if rec is None:
            _fail(f"no key with id {key_id!r}", 1)
        _record_cli_action(config, "key.revoke", {"key_id": key_id})
        typer.echo(f"key {key_id} revoked on every replica within seconds")
        return
    from gateway.keyfile import revoke_key

    if not revoke_key(_config_path(config), key_id):
        _fail(f"no key with id {key_id!r} in the config (a database key needs --db)", 1)
    typer.echo(f"key {key_id} revoked")


@keys_app.command("list")
def keys_list(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """List the config file's keys and the database's keys (never a secret or digest)."""

    from audit import fleet

    cfg = _load(config)
    stored = {r.key_id: r for r in fleet.list_keys(_engine(config))}
    rows: list[dict[str, Any]] = []
    for k in cfg.keys:
        revoked = stored.pop(k.key_id, None)
        rows.append(
            {
                "id": k.key_id,
                "tenant": k.tenant,
                "role": k.role,
                "policy": k.policy,
                "rpm": k.rpm,
                "tpm": k.tpm,
                "source": "config",
                "revoked_at": revoked.public()["revoked_at"] if revoked else None,
            }
        )
    rows.extend(r.public() for r in stored.values())
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    for row in rows:
        state = f"revoked {row['revoked_at']}" if row["revoked_at"] else "active"
        limits = f"rpm={row['rpm'] or '-'} tpm={row['tpm'] or '-'}"
        typer.echo(f"{row['id']:<24} {row['tenant']:<16} {row['role']:<8} {row['source']:<8} {limits:<20} {state}")


def _load(config: str | None) -> Any:
    from gateway.config import load_config

    try:
        return load_config(config)
    except YamlModelError as exc:
        _fail(f"invalid configuration:\n{exc}")
        raise AssertionError from exc


def _record_cli_action(config: str | None, action: str, detail: dict[str, Any]) -> None:
    """The CLI's database actions are audit records too, in a chain of this command's own."""
    from audit.write.writer import AuditWriter
    from gateway.admin_api import admin_record
    from gateway.pipeline.session import new_request_id

    cfg = _load(config)
    if not cfg.audit.enabled:
        return
    writer = AuditWriter(_database_url(config), spool_dir=cfg.resolve(cfg.audit.spool_dir))
    writer.start()
    try:
        writer.submit(
            admin_record(
                tenant="(cli)",
                key_id=_cli_user(),
                request_id=new_request_id(),
                endpoint=f"warden {action}",
                action=action,
                detail=detail,
            )
        )
    finally:
        writer.close()


def _cli_user() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@policy_app.command("versions")
def policy_versions(
    name: Annotated[str, typer.Argument(help="Policy name.")],
    config: ConfigOpt = None,
) -> None:
    """The stored versions of a policy, newest first; the activated one is marked."""
    from audit import fleet

    engine = _engine(config)
    active = fleet.active_versions(engine).get(name)
    for v in fleet.versions(engine, name):
        mark = "*" if active and active.version_hash == v.version_hash else " "
        typer.echo(f"{mark} {v.version_hash}  {v.created_at:%Y-%m-%d %H:%M:%S}  {v.created_by}  {v.note or ''}")


@policy_app.command("activate")
def policy_activate(
    name: Annotated[str, typer.Argument(help="Policy name.")],
    version: Annotated[str, typer.Argument(help="A stored version (content hash).")],
    config: ConfigOpt = None,
    note: Annotated[str | None, typer.Option(help="Why.")] = None,
) -> None:
    """Put a stored policy version in force on every replica (within seconds)."""
    from audit import fleet
    from policies.loader import load_policy_text

    engine = _engine(config)
    stored = fleet.find_version(engine, name, version)
    if stored is None:
        _fail(f"policy {name!r} has no stored version {version!r}", 1)
        return
    try:
        load_policy_text(stored.yaml_text, f"{name} (version {version})")
    except YamlModelError as exc:
        _fail(f"version {version} no longer loads:\n{exc}", 1)
    fleet.activate(engine, name, version, by=_cli_user(), note=note)
    _record_cli_action(config, "policy.activate", {"policy": name, "version": version})
    typer.echo(f"policy {name} version {version} activated; every replica serves it within seconds")


def _config_path(config: str | None) -> Path:
    from gateway.config import DEFAULT_CONFIG_ENV

    raw = config or os.environ.get(DEFAULT_CONFIG_ENV)
    if not raw:
        _fail(f"pass --config or set {DEFAULT_CONFIG_ENV}")
    return Path(str(raw))


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="viewer, reviewer or admin.")] = "viewer",
    config: ConfigOpt = None,
) -> None:
    """Add a dashboard user; the password is read from standard input, never an argument."""
    from dashboard.auth import add_user

    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass("password: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        _fail("the password must have at least 8 characters")
    add_user(_database_url(config), name, role, password)
    typer.echo(f"user {name} ({role}) saved")


@app.command()
def dashboard(
    config: ConfigOpt = None,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
) -> None:
    """Run the compliance review dashboard (Streamlit) on the gateway's database."""
    from dashboard import launch

    launch(str(_config_path(config)), port=port, host=host)


@app.command()
def redteam(
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="Run in process with this config's policy.")
    ] = None,
    policy: Annotated[Path | None, typer.Option(help="Run in process with this policy file.")] = None,
    url: Annotated[str | None, typer.Option(help="Run against a gateway, e.g. http://127.0.0.1:8080/v1.")] = None,
    key: Annotated[str | None, typer.Option(help="Client key for --url (or $WARDEN_API_KEY).")] = None,
    model: Annotated[str, typer.Option(help="Model name for --url.")] = "gpt-4o-mini",
    prompts: Annotated[list[Path] | None, typer.Option("--prompts", help="Extra JSONL prompt sets.")] = None,
    shipped: Annotated[bool, typer.Option(help="Include the shipped attack and benign sets.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scorecard as JSON.")] = False,
    min_block_rate: Annotated[float, typer.Option(help="Exit 1 if fewer attacks are blocked.")] = 0.0,
    max_false_positive_rate: Annotated[float, typer.Option(help="Exit 1 if more benign prompts are blocked.")] = 1.0,
) -> None:
    """Run attack and benign prompts through a policy and print a scorecard."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from gateway import redteam as rt

    sets = (rt.shipped_sets() if shipped else []) + list(prompts or [])
    try:
        items = rt.load_prompts(sets)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    if not items:
        _fail("no prompts: give --prompts FILE or keep the shipped sets")
    with Progress(
        TextColumn("redteam"),
        BarColumn(),
        MofNCompleteColumn(),
        transient=True,
        disable=as_json or not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task("prompts", total=len(items))

        def tick(n: int) -> None:
            bar.update(task, completed=n)

        if url:
            api_key = key or os.environ.get("WARDEN_API_KEY")
            if not api_key:
                _fail("--url needs --key or $WARDEN_API_KEY")
            outcomes = asyncio.run(rt.run_against_url(url, str(api_key), model, items, tick))
        else:
            compiled = _redteam_policy(config, policy)
            outcomes = asyncio.run(rt.run_in_process(compiled, items, tick))
    card = rt.score(outcomes)
    if as_json:
        typer.echo(json.dumps(card.to_json(), indent=2))
    else:
        _print_scorecard(card)
    if card.total.block_rate < min_block_rate or card.total.false_positive_rate > max_false_positive_rate:
        raise typer.Exit(1)


def _redteam_policy(config: str | None, policy: Path | None) -> Any:
    from policies.loader import load_policy

    try:
        if policy is not None:
            return load_policy(policy)
        from gateway.config import load_config

        cfg = load_config(config) if (config or os.environ.get("WARDEN_CONFIG")) else None
        return load_policy(
            cfg.resolve(cfg.policy) if cfg else Path(__file__).parent.parent / "policies" / "default.yaml"
        )
    except YamlModelError as exc:
        _fail(str(exc))


def _print_scorecard(card: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="Red-team scorecard")
    for col in (
        "category",
        "attacks",
        "blocked",
        "flagged only",
        "missed",
        "benign",
        "false pos.",
        "block rate",
        "FP rate",
    ):
        table.add_column(col, justify="left" if col == "category" else "right")
    for name, t in [*card.categories.items(), ("TOTAL", card.total)]:
        table.add_row(
            name,
            str(t.attacks),
            str(t.blocked),
            str(t.detected - t.blocked),
            str(t.missed - (t.detected - t.blocked)),
            str(t.benign),
            str(t.false_positives),
            f"{t.block_rate:.0%}" if t.attacks else "-",
            f"{t.false_positive_rate:.0%}" if t.benign else "-",
        )
    console.print(table)
    checks = Table(title="Per check")
    for col in ("check", "fired on attacks", "fired on benign"):
        checks.add_column(col, justify="left" if col == "check" else "right")
    for name, counts in card.checks.items():
        checks.add_row(name, str(counts["on_attacks"]), str(counts["on_benign"]))
    console.print(checks)
    if card.slowest:
        slow = Table(title="Slowest checks")
        for col in ("check", "mean ms", "max ms"):
            slow.add_column(col, justify="left" if col == "check" else "right")
        for name, mean, worst in card.slowest:
            slow.add_row(name, f"{mean:.2f}", f"{worst:.2f}")
        console.print(slow)
    if card.missed:
        console.print("missed attacks: " + ", ".join(card.missed))
    if card.false_positives:
        console.print("benign prompts blocked: " + ", ".join(card.false_positives))


def main() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    app()


if __name__ == "__main__":
    main()
