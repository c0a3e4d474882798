"""The installed ``quota-ledger`` command: ``ledger.cli`` plus the commands that serve the API."""

from __future__ import annotations

import logging
import signal
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from api.main import create_app
from ledger.chain.anvil import DEMO_ACCOUNTS, AnvilNode
from ledger.chain.redact import install_log_redaction, redact
from ledger.cli import ChainOpt, DataDirOpt, app, console, exit_on_sigterm, main, settings_from
from ledger.runtime import Ledger
from ledger.settings import ChainKind


@app.command()
def up(
    chain: ChainOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="API address")] = None,
    port: Annotated[int | None, typer.Option(help="API port")] = None,
) -> None:
    """Start everything: a local anvil node (persistent), the contract, the API."""
    install_log_redaction()  # the node's URL, quoted by errors, may carry an API key
    settings = settings_from(chain, data_dir)
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
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    supervisor = None
    try:
        ledger = Ledger.open(settings, rpc_url=rpc_url)
        if node is not None:
            # A node that dies is restarted and its journal replayed; checks refuse meanwhile.
            supervisor = ledger.supervise(node)
        _announce(ledger, rpc_url, host or settings.api_host, port or settings.api_port)
        _serve(ledger, host or settings.api_host, port or settings.api_port)
    finally:
        if supervisor is not None:
            supervisor.stop()
        if node is not None:
            node.stop()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="API address")] = None,
    port: Annotated[int | None, typer.Option(help="API port")] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="API processes sharing the port (each opens the ledger)")
    ] = 1,
) -> None:
    """Serve the API against the node at QL_RPC_URL (no local node is started)."""
    install_log_redaction()  # the node's URL, quoted by errors, may carry an API key
    settings = settings_from(ChainKind.RPC)
    # Migrates, deploys and replays once, here, before any worker races to do it.
    ledger = Ledger.open(settings)
    host, port = host or settings.api_host, port or settings.api_port
    _announce(ledger, settings.rpc_url, host, port)
    if workers == 1:
        _serve(ledger, host, port)
        return
    ledger.engine.dispose()  # each worker opens its own connections after the fork
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(
        f"{__name__}:{worker_app.__name__}",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # A spawned worker first re-imports this module (web3 and all, seconds on a loaded
        # machine) before it can answer uvicorn's pings: the default 5 s kills it in a loop.
        timeout_worker_healthcheck=60,
        log_level="info",
        access_log=settings.access_log_enabled,
    )


def worker_app() -> FastAPI:
    """The app of one ``serve --workers`` process: its own ledger, from the same settings.

    Each worker follows the index and runs the anchorer in the background; the leader locks
    elect the one of them (or of any other process on the database) that actually does each.
    """
    install_log_redaction()  # a worker is a fresh process: the parent's filter is not inherited
    logging.basicConfig(level=logging.INFO)
    # The parent synced the index a moment ago; until the leader catches up, checks refuse.
    ledger = Ledger.open(settings_from(ChainKind.RPC), sync_index=False)
    return create_app(ledger, follow_index=True)


def _announce(ledger: Ledger, rpc_url: str | None, host: str, port: int) -> None:
    recovery = ledger.recovery
    console.print(
        f"[bold]quota-ledger[/bold] API  http://{host}:{port}   docs http://{host}:{port}/docs"
    )
    console.print(f"chain {ledger.chain.chain_id} at {redact(rpc_url or 'in-process memory')}")
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
    logging.basicConfig(level=logging.INFO)
    # Checks read the index: of the processes sharing the database, the leader keeps it up.
    follower = ledger.follow_index()
    anchorer = ledger.anchor_in_background()  # the leader of the processes anchors the log
    try:
        uvicorn.run(
            create_app(ledger),
            host=host,
            port=port,
            log_level="info",
            access_log=ledger.settings.access_log_enabled,
        )
    finally:
        if anchorer is not None:
            anchorer.stop()
        follower.stop()


if __name__ == "__main__":
    main()
