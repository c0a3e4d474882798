"""``quota-ledger``: a thin shell over ``ledger`` functions.

The commands that serve HTTP (``up``, ``serve``) are added by ``api.cli``, the installed entry
point, so that ``ledger`` never imports ``api``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from eth_account import Account
from eth_utils.crypto import keccak
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy.engine import Engine

from ledger.audit.anchorer import anchor_once
from ledger.audit.anchors import anchors_from_chain
from ledger.audit.checkpoint import Checkpoint
from ledger.audit.export import ExportAnchor, ExportSource, unconfirmed
from ledger.audit.replay import ReplayReport, replay_log
from ledger.audit.report import MAX_DAYS, Period, ReportFormat
from ledger.audit.report_audits import audited_report
from ledger.audit.report_html import render_html
from ledger.audit.verify import DatabaseSource
from ledger.audit.verify import Result as VerifyResult
from ledger.audit.verify import verify as verify_log
from ledger.chain.anvil import answers
from ledger.chain.client import Chain
from ledger.chain.deployment import deployed_address, deployed_at
from ledger.consent import wallet
from ledger.db.engine import make_engine
from ledger.domain import contacts
from ledger.domain.errors import ChainUnavailable, LedgerError
from ledger.domain.law import registry
from ledger.domain.law.rules import BasisRule, LimitRule
from ledger.lists.cache import OppositionCache
from ledger.lists.formats import ImportMode, ListFormat
from ledger.lists.importer import ListImport, import_file
from ledger.runtime import Ledger
from ledger.schema import migrated_engine
from ledger.services import apikeys, companies, linking
from ledger.services.apikeys import Role
from ledger.settings import ChainKind, Settings

app = typer.Typer(
    help="quota-ledger: consent-based contact quotas on an EVM ledger.", no_args_is_help=True
)
company_app = typer.Typer(help="Company registry (operator, registrar role).", no_args_is_help=True)
wallet_app = typer.Typer(
    help="Consumer wallet: sign locally, relay through the API.", no_args_is_help=True
)
lists_app = typer.Typer(
    help="Opposition lists: national registries and companies' own do-not-call lists.",
    no_args_is_help=True,
)
app.add_typer(company_app, name="company")
app.add_typer(wallet_app, name="wallet")
app.add_typer(lists_app, name="lists")
keys_app = typer.Typer(help="API keys (operator, on the server).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(
    help="Audit (regulator): check the usage log against the chain.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
console = Console()

ChainOpt = Annotated[ChainKind | None, typer.Option(help="anvil (default), memory or rpc")]
DataDirOpt = Annotated[Path | None, typer.Option(help="data directory (default ./.quota-ledger)")]
ApiOpt = Annotated[str, typer.Option(help="quota-ledger API base URL")]
# What an auditor may point the audit commands at instead of the operator's configuration.
RpcUrlOpt = Annotated[
    str | None, typer.Option(help="the chain's JSON-RPC URL (default: the configured node)")
]
ContractOpt = Annotated[
    str | None, typer.Option(help="the ledger contract (default: the configured one)")
]
FromBlockOpt = Annotated[int, typer.Option(help="first block whose events are read")]


def settings_from(chain: ChainKind | None = None, data_dir: Path | None = None) -> Settings:
    overrides: dict[str, object] = {}
    if chain is not None:
        overrides["chain"] = chain
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return Settings(**overrides)  # type: ignore[arg-type]


@app.command()
def migrate(data_dir: DataDirOpt = None) -> None:
    """Bring the database schema up to date (every start does it too; run it before a deploy)."""
    settings = settings_from(None, data_dir)
    migrated_engine(settings.sqlalchemy_url).dispose()
    console.print("database schema is up to date")


@app.command()
def rules() -> None:
    """List the rules of law the decision applies, with their ids and references."""
    table = Table("id", "regions", "channels", "in force", "what", "reference", show_lines=True)
    for rule in registry.EVERY_RULE:
        table.add_row(
            rule.id,
            ", ".join(sorted(rule.scope.regions)),
            ", ".join(c.name.lower() for c in sorted(rule.scope.channels)),
            _period(rule.scope.valid_from, rule.scope.valid_until),
            _what(rule),
            rule.reference,
        )
    console.print(table)


def _period(start: datetime | None, end: datetime | None) -> str:
    since = "always" if start is None else f"from {start:%Y-%m-%d %H:%M %Z}"
    return since if end is None else f"{since}, until {end:%Y-%m-%d %H:%M %Z}"


def _what(rule: BasisRule | LimitRule) -> str:
    if rule in (registry.COMPANY_DO_NOT_CALL, registry.REVOCATION):
        return f"refuses, in every regime: {rule.note}"
    if isinstance(rule, LimitRule):
        exempt = ", ".join(sorted(b.value for b in rule.exempt)) or "none"
        return f"limit: {rule.kind.value}; exempt: {exempt}. {rule.note}".strip()
    admits = ", ".join(sorted(b.value for b in rule.admits))
    needs = f"consent or {admits}" if admits else "consent"
    if rule.list_max_age_days is not None:
        needs += f" (list copy at most {rule.list_max_age_days} days old)"
    return f"basis: {needs}. {rule.note}".strip()


@app.command()
def index(
    once: Annotated[bool, typer.Option("--once", help="catch up with the head, then exit")] = False,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="empty the index and rebuild it from the deployment")
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Follow the ledger contract's events into the database (`up` and `serve` run this too)."""
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    ledger = _open_running(data_dir, sync_index=False)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("indexing", total=None)

        def show(checkpoint: int, target: int, events: int) -> None:
            bar.update(task, total=target, completed=checkpoint, description=f"{events:,} events")

        run = ledger.indexer.rebuild if rebuild else ledger.indexer.sync
        report = run(progress=show)
    console.print(f"index at block {report.checkpoint}: {report.events:,} events indexed")
    if once:
        return
    follower = ledger.follow_index()
    console.print("following the chain (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        follower.stop()


@app.command()
def anchor(data_dir: DataDirOpt = None) -> None:
    """Anchor the usage log's Merkle root on chain now (`up` and `serve` do it every N entries)."""
    ledger = _open_running(data_dir, sync_index=False)
    log_id = ledger.settings.log_id
    done = anchor_once(ledger.chain, ledger.engine, log_id=log_id)
    if done is None:
        console.print(f"usage log {log_id}: nothing new to anchor")
        return
    console.print(
        f"usage log {log_id} anchored: tree size {done.tree_size}, root {done.root.hex()}, "
        f"block {done.block_number}, transaction {done.tx_hash}"
    )


@company_app.command("register")
def company_register(
    company_id: int,
    name: str,
    admin: Annotated[
        str | None, typer.Option(help="company admin address (default: operator)")
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Register a company on chain and print its API key (shown once)."""
    ledger = _open_running(data_dir)
    done = companies.register(
        ledger.relayer,
        ledger.engine,
        company_id=company_id,
        name=name,
        admin=admin or ledger.chain.operator.address,
    )
    console.print(f"company {company_id} ({name}) registered in block {done.block_number}")
    console.print("API key (shown once, store it now):")
    print(done.api_key)


@company_app.command("suspend")
def company_suspend(company_id: int, data_dir: DataDirOpt = None) -> None:
    """Suspend a company: checks refuse it until it is reinstated."""
    receipt = _open_running(data_dir).relayer.suspend_company(company_id)
    console.print(f"company {company_id} suspended in block {receipt['blockNumber']}")


@company_app.command("reinstate")
def company_reinstate(company_id: int, data_dir: DataDirOpt = None) -> None:
    """Reinstate a suspended company."""
    receipt = _open_running(data_dir).relayer.reinstate_company(company_id)
    console.print(f"company {company_id} reinstated in block {receipt['blockNumber']}")


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="company, regulator or operator")],
    company: Annotated[int | None, typer.Option(help="company id (company keys)")] = None,
    label: Annotated[str, typer.Option(help="a note to recognise the key by")] = "",
    data_dir: DataDirOpt = None,
) -> None:
    """Create an API key and print it (shown once)."""
    settings = settings_from(None, data_dir)
    token, record = apikeys.create_key(
        migrated_engine(settings.sqlalchemy_url), role=role, company_id=company, label=label
    )
    console.print(f"{role.value} key {record.id} created (shown once, store it now):")
    print(token)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDirOpt = None) -> None:
    """Revoke an API key."""
    settings = settings_from(None, data_dir)
    apikeys.revoke_key(migrated_engine(settings.sqlalchemy_url), key_id)
    console.print(f"key {key_id} revoked")


@app.command()
def link(contact: str, consumer: str, data_dir: DataDirOpt = None) -> None:
    """Attest that CONSUMER controls CONTACT (operator; after a proof of control)."""
    ledger = _open_running(data_dir)
    parsed = contacts.parse_contact(contact, default_region=ledger.settings.default_region)
    commitment = contacts.commitment(parsed, ledger.settings.contact_salt_bytes)
    receipt = ledger.relayer.attest_link(consumer, commitment)
    console.print(f"{parsed.value} linked to {consumer} in block {receipt['blockNumber']}")


@app.command("link-start")
def link_start(contact: str, consumer: str, data_dir: DataDirOpt = None) -> None:
    """Send a one-time code to CONTACT proving CONSUMER controls it."""
    settings = settings_from(None, data_dir)
    linker = linking.Linker.from_settings(settings, migrated_engine(settings.sqlalchemy_url))
    started = linker.start(consumer=consumer, contact=contact)
    until = datetime.fromtimestamp(started.expires_at, UTC)
    console.print(f"code sent to {started.destination}, valid until {until:%H:%M:%S} UTC")


@app.command("link-verify")
def link_verify(contact: str, consumer: str, code: str, data_dir: DataDirOpt = None) -> None:
    """Check the one-time code and attest the link of CONTACT to CONSUMER on chain."""
    ledger = _open_running(data_dir)
    linked = linking.verify_and_attest(
        ledger.linker, ledger.relayer, consumer=consumer, contact=contact, code=code
    )
    console.print(f"linked to {linked.consumer} in block {linked.block_number}")


@app.command()
def outbox(
    limit: Annotated[int, typer.Option(help="messages to show")] = 20,
    data_dir: DataDirOpt = None,
) -> None:
    """Show the development outbox: the one-time codes "sent" (newest first)."""
    settings = settings_from(None, data_dir)
    table = Table("id", "sent (UTC)", "channel", "to", "message")
    for m in linking.recent_outbox(migrated_engine(settings.sqlalchemy_url), limit=limit):
        sent = datetime.fromtimestamp(m.created_at, UTC)
        table.add_row(str(m.id), f"{sent:%Y-%m-%d %H:%M:%S}", m.channel, m.destination, m.text)
    console.print(table)


@lists_app.command("import")
def lists_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the list file")],
    region: Annotated[str, typer.Option(help="the list's region (US, GB, FR...)")],
    fmt: Annotated[ListFormat, typer.Option("--format", help="dnc, lines or csv")] = (
        ListFormat.LINES
    ),
    column: Annotated[str, typer.Option(help="CSV: column number (1 = first) or name")] = "1",
    header: Annotated[bool, typer.Option(help="CSV: the first row names the columns")] = False,
    source: Annotated[str | None, typer.Option(help="where it came from (default: name)")] = None,
    fetched_at: Annotated[
        datetime | None,
        typer.Option(help="when the registry copy was taken, UTC (default: the file's mtime)"),
    ] = None,
    max_age_days: Annotated[
        int | None, typer.Option(help="days the list stays usable (default: legal maximum)")
    ] = None,
    company: Annotated[
        int | None, typer.Option(help="import this company's own do-not-call list")
    ] = None,
    delta: Annotated[bool, typer.Option(help="add to the current list (DNC: A/D flags)")] = False,
    delta_remove: Annotated[
        bool, typer.Option(help="remove the file's numbers from the current list")
    ] = False,
    workers: Annotated[int, typer.Option(help="processes parsing numbers")] = 0,
    data_dir: DataDirOpt = None,
) -> None:
    """Import an opposition list (a full list or a delta) as a new versioned snapshot."""
    if delta and delta_remove:
        raise typer.BadParameter("--delta and --delta-remove exclude each other")
    mode = ImportMode.REMOVE if delta_remove else ImportMode.DELTA if delta else ImportMode.FULL
    when = None
    if fetched_at is not None:
        aware = fetched_at if fetched_at.tzinfo else fetched_at.replace(tzinfo=UTC)
        when = int(aware.timestamp())
    spec = ListImport(
        region=region,
        fmt=fmt,
        mode=mode,
        column=int(column) - 1 if column.isdigit() else column,
        header=header,
        max_age=None if max_age_days is None else max_age_days * 86400,
        company_id=company,
        workers=workers or len(os.sched_getaffinity(0)),
    )
    cache = _open_lists(data_dir)
    with console.status(f"importing {file.name}..."):
        report = import_file(file, spec, cache=cache, source=source, fetched_at=when)
    m = report.snapshot
    verb = "imported" if report.created else "already imported"
    fetched = datetime.fromtimestamp(m.fetched_at, UTC)
    console.print(
        f"{verb} {m.version}: {m.count:,} numbers (+{m.added:,} / -{m.removed:,}) "
        f"from {m.lines:,} lines, fetched {fetched:%Y-%m-%d %H:%M} UTC"
    )
    if m.invalid:
        first = ", ".join(str(n) for n in report.invalid_lines)
        console.print(f"[yellow]{m.invalid:,} invalid lines skipped (first: {first})[/yellow]")


@lists_app.command("status")
def lists_status(data_dir: DataDirOpt = None) -> None:
    """Show the current snapshot of every list: version, age, freshness, counts."""
    now = int(time.time())
    table = Table(
        "list", "version", "source", "fetched (UTC)", "age", "max age", "state", "numbers"
    )
    for m in _open_lists(data_dir).current():
        name = m.region if m.company_id is None else f"company {m.company_id}"
        age = (now - m.fetched_at) / 86400
        state = "-" if m.max_age is None else "STALE" if now - m.fetched_at > m.max_age else "fresh"
        table.add_row(
            name,
            m.version,
            m.source,
            f"{datetime.fromtimestamp(m.fetched_at, UTC):%Y-%m-%d %H:%M}",
            f"{age:.1f} d",
            "-" if m.max_age is None else f"{m.max_age / 86400:g} d",
            state,
            f"{m.count:,}",
        )
    console.print(table)


@wallet_app.command("grant")
def wallet_grant(
    key: Annotated[str, typer.Option(envvar="QL_WALLET_KEY", help="consumer private key")],
    company: Annotated[int, typer.Option(help="company id")],
    channel: Annotated[str, typer.Option(help="call, sms, email or messaging")],
    max_contacts: Annotated[int, typer.Option("--max", help="contacts per period")],
    notice: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="the company's notice you read")
    ],
    period_days: Annotated[int, typer.Option(help="rolling period in days")] = 365,
    api: ApiOpt = "http://127.0.0.1:8000",
) -> None:
    """Sign a grant with your key and relay it (the operator pays the gas).

    The grant carries the keccak-256 of the notice file, so the consent can be proven later.
    """
    answer = wallet.Wallet(api, key).grant(
        company_id=company,
        channel=channel,
        max_contacts=max_contacts,
        period=period_days * 86400,
        notice_hash="0x" + keccak(notice.read_bytes()).hex(),
    )
    console.print(f"grant relayed: tx {answer['tx_hash']} in block {answer['block_number']}")


@wallet_app.command("revoke")
def wallet_revoke(
    key: Annotated[str, typer.Option(envvar="QL_WALLET_KEY", help="consumer private key")],
    company: Annotated[int, typer.Option(help="company id")],
    channel: Annotated[str, typer.Option(help="call, sms, email or messaging")],
    api: ApiOpt = "http://127.0.0.1:8000",
) -> None:
    """Sign a revocation with your key and relay it."""
    answer = wallet.Wallet(api, key).revoke(company_id=company, channel=channel)
    console.print(f"grant revoked: tx {answer['tx_hash']} in block {answer['block_number']}")


@audit_app.command("replay")
def audit_replay(
    rpc_url: RpcUrlOpt = None,
    contract: ContractOpt = None,
    export: Annotated[
        Path | None, typer.Option(help="a JSON Lines export to replay instead of the database")
    ] = None,
    company: Annotated[
        int | None, typer.Option(help="replay only this company's decisions")
    ] = None,
    from_block: FromBlockOpt = 0,
    workers: Annotated[int, typer.Option(min=1, help="processes that share a long replay")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Decide every recorded decision again from the chain's events and the log alone.

    Exit 0: every decision agrees; 1: violations or other disagreements; 2: cannot replay.
    """
    settings = settings_from(None, data_dir)
    try:
        engine = None if export is not None else migrated_engine(settings.sqlalchemy_url)
        chain = _audit_chain(settings, engine, rpc_url, contract)
        with Progress(console=console, transient=True, disable=as_json) as bar:
            reading = bar.add_task("reading the chain's events", total=None)
            replaying = bar.add_task("replaying decisions", total=None, visible=False)

            def on_chain(block: int, head: int, events: int) -> None:
                description = f"reading the chain's events: {events:,}"
                bar.update(reading, total=head, completed=block, description=description)

            def on_entries(done: int, total: int | None) -> None:
                bar.update(replaying, total=total, completed=done, visible=True)

            report = replay_log(
                chain,
                engine=engine,
                export=export,
                company_id=company,
                start_block=from_block,
                on_chain=on_chain,
                on_entries=on_entries,
                workers=workers,
            )
    except (LedgerError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, LedgerError) else str(exc)
        console.print(f"[red]cannot replay:[/red] {message}")
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        _print_replay(report)
    raise typer.Exit(0 if report.ok else 1)


def _audit_chain(
    settings: Settings, engine: Engine | None, rpc_url: str | None, contract: str | None
) -> Chain:
    """A client of the chain for an auditor: reads only, with a throwaway key. By default the
    contract the database was deployed with (an auditor who doubts it passes ``--contract``)."""
    url = rpc_url or settings.rpc_url
    if url is None and settings.chain is ChainKind.ANVIL:
        url = f"http://127.0.0.1:{settings.anvil_port}"
    address = contract or settings.contract_address
    if address is None and engine is not None:
        address = deployed_address(engine)
    if url is None or address is None:
        raise ValueError("give the chain's --rpc-url and the ledger --contract address")
    chain = Chain.connect(
        url, operator_key=Account.create().key.hex(), timeout=settings.rpc_timeout
    )
    chain.use(address)
    return chain


def _print_replay(report: ReplayReport) -> None:
    for finding in report.findings:
        console.print(finding.line(), markup=False, highlight=False)
    summary = report.summary()
    status = "[green]ok[/green]" if report.ok else "[red]disagreements found[/red]"
    console.print(
        f"{status}: {summary['decisions']:,} decisions replayed up to block "
        f"{summary['chain_head']}, {summary['agreed']:,} agree; {summary['violations']} "
        f"violations, {summary['wrongly_refused']} wrongly refused, {summary['mismatches']} "
        f"mismatches; {summary['outcomes']:,} outcomes, {summary['not_replayable']:,} refusals "
        "recorded before the ledger was read"
    )
    for what, count in summary["not_rechecked"].items():
        console.print(f"{what} ({count:,} decisions)", markup=False, highlight=False)


@audit_app.command("report")
def audit_report(
    company: Annotated[int | None, typer.Option(help="one company (default: all)")] = None,
    days: Annotated[
        int, typer.Option(min=1, max=MAX_DAYS, help="the last N days, today included")
    ] = 30,
    since: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="first day (UTC), with --until")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="last day (UTC), included")
    ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", help="html or json")] = (
        ReportFormat.HTML
    ),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file to write (default: stdout)")
    ] = None,
    verify_log: Annotated[
        bool, typer.Option("--verify/--no-verify", help="re-hash the log against the anchors")
    ] = True,
    replay: Annotated[
        bool, typer.Option("--replay/--no-replay", help="replay every decision from the chain")
    ] = True,
    rpc_url: RpcUrlOpt = None,
    contract: ContractOpt = None,
    from_block: FromBlockOpt = 0,
    data_dir: DataDirOpt = None,
) -> None:
    """Write the audit report (HTML or JSON): contacts, quotas, refusals, violations, anchors."""
    now = int(time.time())
    try:
        period = Period.asked(
            days=days,
            first=since.date() if since else None,
            last=until.date() if until else None,
            now=now,
        )
    except LedgerError as exc:
        raise typer.BadParameter(f"{exc.message} (--since, --until)") from exc
    settings = settings_from(None, data_dir)
    engine = migrated_engine(settings.sqlalchemy_url)
    try:
        chain = _audit_chain(settings, engine, rpc_url, contract) if verify_log or replay else None
        with console.status("running the audits against the chain", spinner="dots"):
            report = audited_report(
                engine,
                chain,
                period=period,
                company_id=company,
                log_id=settings.log_id,
                now=now,
                run_verify=verify_log,
                run_replay=replay,
                from_block=from_block,
            )
    except (LedgerError, ValueError) as exc:
        message = exc.message if isinstance(exc, LedgerError) else str(exc)
        console.print(f"[red]cannot make the report:[/red] {message}")
        console.print("(--no-verify --no-replay makes it from the database alone)")
        raise typer.Exit(2) from exc
    finally:
        engine.dispose()
    text = report.model_dump_json(indent=2) if fmt is ReportFormat.JSON else render_html(report)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"report written to {output}")


@audit_app.command("verify")
def audit_verify(
    export: Annotated[
        Path | None, typer.Option(help="a JSON Lines export to verify instead of the database")
    ] = None,
    rpc_url: RpcUrlOpt = None,
    contract: Annotated[
        str | None,
        typer.Option(help="the ledger contract (default: the database's, or the export's)"),
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="resume from / record progress in this file")
    ] = None,
    log_id: Annotated[int | None, typer.Option(help="the usage log's id on chain")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Re-hash the usage log and check it against the anchors on chain; name the first tampering.

    Exit 0: the log holds; 1: tampered (kind and seq); 2: cannot verify.
    """
    settings = settings_from(None, data_dir)
    try:
        result = _verify(settings, export, rpc_url, contract, checkpoint, log_id, as_json)
    except (LedgerError, OSError, ValueError) as exc:
        message = exc.message if isinstance(exc, LedgerError) else str(exc)
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": message}))
        else:
            console.print(f"[red]cannot verify:[/red] {message}", highlight=False)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(result.as_json()))
    elif result.problem is None:
        console.print(
            f"[green]ok[/green]: {result.size:,} entries verified ({result.read:,} read), "
            f"{result.anchors} anchors checked, root {result.root}",
            highlight=False,
        )
    else:
        console.print(f"[red]tampered[/red]: {result.problem.line()}", highlight=False)
    raise typer.Exit(0 if result.ok else 1)


def _verify(
    settings: Settings,
    export: Path | None,
    rpc_url: str | None,
    contract: str | None,
    checkpoint: Path | None,
    log_id: int | None,
    quiet: bool,
) -> VerifyResult:
    """``audit verify`` without its printing: the source, the chain's anchors, the run."""
    claimed: list[ExportAnchor] = []
    if export is not None:
        exported = ExportSource(export)
        source: DatabaseSource | ExportSource = exported
        log_id = exported.log.get("log_id", settings.log_id) if log_id is None else log_id
        contract = contract or exported.log.get("contract")
        chain = _audit_chain(settings, None, rpc_url, contract)
        claimed = exported.anchors()
        start = 0
    else:
        engine = make_engine(settings.sqlalchemy_url)
        source = DatabaseSource(engine)
        chain = _audit_chain(settings, engine, rpc_url, contract)
        start = deployed_at(engine)
    log_id = settings.log_id if log_id is None else int(log_id)
    anchors = anchors_from_chain(chain, log_id, from_block=start)
    name = f"chain {chain.chain_id} / contract {chain.address} / log {log_id}"
    with contextlib.ExitStack() as stack:
        kept = None
        if checkpoint is not None:
            kept = stack.enter_context(Checkpoint.open(checkpoint, log=name))
        bar = stack.enter_context(Progress(console=console, transient=True, disable=quiet))
        task = bar.add_task("verifying the usage log", total=None)

        def show(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        result = verify_log(source, anchors, checkpoint=kept, progress=show)
    if result.problem is None:
        result = dataclasses.replace(result, problem=unconfirmed(claimed, anchors))
    return result


def main() -> None:
    """Entry point: domain errors become one readable line and exit code 1."""
    try:
        app()
    except LedgerError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise SystemExit(1) from exc


def exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _open_running(data_dir: Path | None, *, sync_index: bool = True) -> Ledger:
    """Opens the ledger of a running `quota-ledger up` (its node and database)."""
    settings = settings_from(None, data_dir)
    if settings.chain is ChainKind.MEMORY:
        raise ChainUnavailable("the in-memory chain lives inside `quota-ledger up`; use its API")
    url = settings.rpc_url
    if settings.chain is ChainKind.ANVIL:
        url = f"http://127.0.0.1:{settings.anvil_port}"
        if not answers(url):
            raise ChainUnavailable(f"no node on {url}: start it with `make up`")
    return Ledger.open(settings, rpc_url=url, sync_index=sync_index)


def _open_lists(data_dir: Path | None) -> OppositionCache:
    """The opposition lists need only the database and the data directory, not the node."""
    settings = settings_from(None, data_dir)
    return OppositionCache.from_settings(settings, migrated_engine(settings.sqlalchemy_url))


if __name__ == "__main__":
    main()
