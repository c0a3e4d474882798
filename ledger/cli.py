"""``quota-ledger``: a thin shell over ``ledger`` functions."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ledger import apikeys, companies, contacts, wallet
from ledger.apikeys import Role
from ledger.errors import ChainUnavailable, LedgerError
from ledger.node import DEMO_ACCOUNTS, AnvilNode, answers
from ledger.runtime import Ledger
from ledger.settings import ChainKind, Settings
from ledger.storage import make_engine

app = typer.Typer(
    help="quota-ledger: consent-based contact quotas on an EVM ledger.", no_args_is_help=True
)
company_app = typer.Typer(help="Company registry (operator, registrar role).", no_args_is_help=True)
wallet_app = typer.Typer(
    help="Consumer wallet: sign locally, relay through the API.", no_args_is_help=True
)
app.add_typer(company_app, name="company")
app.add_typer(wallet_app, name="wallet")
keys_app = typer.Typer(help="API keys (operator, on the server).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()

ChainOpt = Annotated[ChainKind | None, typer.Option(help="anvil (default), memory or rpc")]
DataDirOpt = Annotated[Path | None, typer.Option(help="data directory (default ./.quota-ledger)")]
ApiOpt = Annotated[str, typer.Option(help="quota-ledger API base URL")]


def _settings(chain: ChainKind | None = None, data_dir: Path | None = None) -> Settings:
    overrides: dict[str, object] = {}
    if chain is not None:
        overrides["chain"] = chain
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return Settings(**overrides)  # type: ignore[arg-type]


@app.command()
def up(
    chain: ChainOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="API address")] = None,
    port: Annotated[int | None, typer.Option(help="API port")] = None,
) -> None:
    """Start everything: a local anvil node (persistent), the contract, the API."""
    settings = _settings(chain, data_dir)
    node = None
    rpc_url = settings.rpc_url
    if settings.chain is ChainKind.ANVIL:
        node = AnvilNode(
            data_dir=settings.data_dir,
            port=settings.anvil_port,
            state_interval=settings.anvil_state_interval,
        )
        node.start()
        rpc_url = node.url
    # uvicorn re-raises SIGTERM after its shutdown; as SystemExit it lets `finally` stop anvil.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        ledger = Ledger.open(settings, rpc_url=rpc_url)
        _announce(ledger, rpc_url, host or settings.api_host, port or settings.api_port)
        _serve(ledger, host or settings.api_host, port or settings.api_port)
    finally:
        if node is not None:
            node.stop()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="API address")] = None,
    port: Annotated[int | None, typer.Option(help="API port")] = None,
) -> None:
    """Serve the API against the node at QL_RPC_URL (no local node is started)."""
    settings = _settings(ChainKind.RPC)
    ledger = Ledger.open(settings)
    _announce(ledger, settings.rpc_url, host or settings.api_host, port or settings.api_port)
    _serve(ledger, host or settings.api_host, port or settings.api_port)


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
    settings = _settings(None, data_dir)
    token, record = apikeys.create_key(
        make_engine(settings.sqlalchemy_url), role=role, company_id=company, label=label
    )
    console.print(f"{role.value} key {record.id} created (shown once, store it now):")
    print(token)


@keys_app.command("revoke")
def keys_revoke(key_id: str, data_dir: DataDirOpt = None) -> None:
    """Revoke an API key."""
    settings = _settings(None, data_dir)
    apikeys.revoke_key(make_engine(settings.sqlalchemy_url), key_id)
    console.print(f"key {key_id} revoked")


@app.command()
def link(contact: str, consumer: str, data_dir: DataDirOpt = None) -> None:
    """Attest that CONSUMER controls CONTACT (operator; after a proof of control)."""
    ledger = _open_running(data_dir)
    parsed = contacts.parse_contact(contact, default_region=ledger.settings.default_region)
    commitment = contacts.commitment(parsed, ledger.settings.contact_salt_bytes)
    receipt = ledger.relayer.attest_link(consumer, commitment)
    console.print(f"{parsed.value} linked to {consumer} in block {receipt['blockNumber']}")


@wallet_app.command("grant")
def wallet_grant(
    key: Annotated[str, typer.Option(envvar="QL_WALLET_KEY", help="consumer private key")],
    company: Annotated[int, typer.Option(help="company id")],
    channel: Annotated[str, typer.Option(help="call, sms, email or messaging")],
    max_contacts: Annotated[int, typer.Option("--max", help="contacts per period")],
    period_days: Annotated[int, typer.Option(help="rolling period in days")] = 365,
    api: ApiOpt = "http://127.0.0.1:8000",
) -> None:
    """Sign a grant with your key and relay it (the operator pays the gas)."""
    answer = wallet.grant(
        api,
        key,
        company_id=company,
        channel=channel,
        max_contacts=max_contacts,
        period=period_days * 86400,
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
    answer = wallet.revoke(api, key, company_id=company, channel=channel)
    console.print(f"grant revoked: tx {answer['tx_hash']} in block {answer['block_number']}")


def main() -> None:
    """Entry point: domain errors become one readable line and exit code 1."""
    try:
        app()
    except LedgerError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        raise SystemExit(1) from exc


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _open_running(data_dir: Path | None) -> Ledger:
    """Opens the ledger of a running `quota-ledger up` (its node and database)."""
    settings = _settings(None, data_dir)
    if settings.chain is ChainKind.MEMORY:
        raise ChainUnavailable("the in-memory chain lives inside `quota-ledger up`; use its API")
    url = settings.rpc_url
    if settings.chain is ChainKind.ANVIL:
        url = f"http://127.0.0.1:{settings.anvil_port}"
        if not answers(url):
            raise ChainUnavailable(f"no node on {url}: start it with `make up`")
    return Ledger.open(settings, rpc_url=url)


def _announce(ledger: Ledger, rpc_url: str | None, host: str, port: int) -> None:
    recovery = ledger.recovery
    console.print(
        f"[bold]quota-ledger[/bold] API  http://{host}:{port}   docs http://{host}:{port}/docs"
    )
    console.print(f"chain {ledger.chain.chain_id} at {rpc_url or 'in-process memory'}")
    console.print(f"ledger contract {ledger.chain.address}")
    if recovery.lost_blocks:
        console.print(
            f"[yellow]the node had lost blocks: {len(recovery.replayed)} operator transactions "
            f"replayed, {len(recovery.dropped)} refused on replay (see the log)[/yellow]"
        )
    console.print("demo consumer wallets (development keys, public):")
    for address, key in DEMO_ACCOUNTS:
        console.print(f"  {address}  key {key}")


def _serve(ledger: Ledger, host: str, port: int) -> None:
    import uvicorn

    from api.main import create_app

    logging.basicConfig(level=logging.INFO)
    uvicorn.run(create_app(ledger), host=host, port=port, log_level="info")


if __name__ == "__main__":
    main()
