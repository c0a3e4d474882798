"""Typed settings, read once from the environment (prefix ``QL_``) and passed down."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Anvil's and Hardhat's first well-known development account. Public knowledge: usable only
# on a development chain, which is why a non-development environment refuses it.
DEV_OPERATOR_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
DEV_CONTACT_SALT = "development-contact-salt-not-secret"
DEV_SESSION_SECRET = "development-session-secret-not-secret"


class ChainKind(StrEnum):
    """Where the ledger contract lives."""

    ANVIL = "anvil"  # a local anvil node started for you, state persisted in the data directory
    MEMORY = "memory"  # the in-process eth-tester chain: nothing persists
    RPC = "rpc"  # any EVM JSON-RPC endpoint given by ``rpc_url``


class LinkSender(StrEnum):
    """How one-time codes reach the contact being linked."""

    OUTBOX = "outbox"  # a database table read with `quota-ledger outbox` (development)
    WEBHOOK = "webhook"  # an HTTP POST, HMAC-signed, to an SMS / e-mail gateway


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Every tunable of quota-ledger.

    Example:
        >>> settings = Settings(chain="memory")
        >>> settings.sqlalchemy_url.startswith("sqlite")
        True
    """

    model_config = SettingsConfigDict(env_prefix="QL_", env_file=None, extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path(".quota-ledger")

    chain: ChainKind = ChainKind.ANVIL
    rpc_url: str | None = None
    anvil_port: int = 8545
    # Seconds between anvil state dumps: the most chain history an unclean stop can lose.
    anvil_state_interval: int = 1
    contract_address: str | None = None
    operator_key: SecretStr | None = None
    # Seconds a chain read may take before the node counts as unreachable.
    rpc_timeout: float = 5.0
    # Attempts per JSON-RPC call on a transient error (connection refused, timeout, 429/5xx),
    # with exponential backoff: a node that is really down is reported within about a second.
    rpc_attempts: int = 3

    # The event index. Blocks are indexed once `index_confirmations` blocks sit on top of them
    # (0 on a local node, which never reorganises; more on a network that does).
    index_confirmations: int = 0
    # Recent block hashes kept to find the fork point of a reorg; a deeper reorg rebuilds.
    index_reorg_depth: int = 64
    # Seconds between polls of the node by the background indexer.
    index_poll_interval: float = 0.25
    # Largest eth_getLogs block range; the range adapts to the density of events below it.
    index_max_chunk_blocks: int = 10_000
    # Beyond either bound the index counts as stale and checks refuse with `ledger_stale`.
    # Blocks are counted beyond the confirmation depth; seconds since the index last matched
    # the chain head (an upper bound on how long a change on chain has gone unseen).
    index_max_lag_blocks: int = 5
    index_max_lag_seconds: float = 10.0
    # Of the processes sharing a database, one leads the background indexer (ledger/db/leader.py);
    # the others try to take over every this many seconds, so a dead leader is replaced within it.
    leader_retry_seconds: float = Field(default=1.0, gt=0)

    # The usage log's id on chain, and how often its Merkle root is anchored there: once this
    # many entries are unanchored, or this many seconds after the last anchor when any are,
    # whichever comes first (0 turns a trigger off; both 0: only `quota-ledger anchor`).
    log_id: int = Field(default=1, ge=0, lt=1 << 64)
    anchor_every_entries: int = Field(default=1000, ge=0)
    anchor_every_seconds: float = Field(default=60.0, ge=0)
    # Each API process re-hashes the log's new entries every this many seconds, and this many
    # older ones each time (the whole log in turn): a broken log fails checks closed.
    log_verify_interval: float = Field(default=1.0, gt=0)
    log_rescan_rows: int = Field(default=10_000, ge=0)

    database_url: str | None = None  # default: a SQLite file in data_dir
    # Connections each process keeps open, and how many more it may open at a peak (closed
    # again after use). Several API processes on one PostgreSQL: mind its max_connections.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    # Worker threads single checks run in, per API process (each holds one connection at a
    # time: keep it at most db_pool_size). A few beat many on a few cores.
    check_threads: int = Field(default=8, ge=1)
    # How long consent proofs and records are kept: UWG § 7a and the TSR ask 5 years from the
    # grant and after each use.
    retention_years: int = 5
    # A consumer's signed message is relayed only if its deadline is at most this far ahead:
    # no signature lives for years (a revoke-all voids them anyway, through the epoch).
    signature_max_ttl: int = Field(default=86400, gt=0)
    contact_salt: SecretStr | None = None
    default_region: str = "FR"

    # Opposition lists: seconds between re-reads of which snapshot is current (an import by
    # another process is seen within this time; staleness is judged at every decision).
    list_refresh_seconds: float = 5.0

    # Proof of control of a contact: one-time codes.
    link_code_ttl: int = 600  # seconds a code stays valid
    link_max_attempts: int = 5  # wrong codes before the code is dead
    link_starts_per_contact_hour: int = 3  # codes sent to one contact per rolling hour
    link_starts_per_consumer_hour: int = 10  # codes asked by one consumer per rolling hour
    link_sender: LinkSender = LinkSender.OUTBOX
    link_webhook_url: str | None = None  # the SMS / e-mail gateway's endpoint
    link_webhook_secret: SecretStr | None = None  # HMAC key of the webhook's signature
    link_webhook_timeout: float = 10.0

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # uvicorn's line per request; default: on in development, off in production (the metrics
    # count every request by route and status, and the log line costs the event loop).
    access_log: bool | None = None
    # EIP-4361 domain consumers sign in to; default: the API's host:port.
    sign_in_domain: str | None = None
    # EIP-4361 URI the signed message must name exactly; default: http://<sign-in domain>.
    sign_in_uri: str | None = None
    session_secret: SecretStr | None = None
    session_ttl: int = 900  # seconds a consumer token lives
    rate_limit_per_minute: int = 1200  # requests per API key or consumer token
    # Seconds an API process trusts what it last read of an API key: a key revoked through
    # another process (or the CLI) is still accepted here for at most this long.
    api_key_cache_seconds: float = Field(default=2.0, ge=0)
    # Limits on what anyone may ask without a key (api/ratelimit.py). Counters live in Redis
    # when `redis_url` is set (every API process shares them), else in this process's memory.
    redis_url: str | None = None  # e.g. redis://127.0.0.1:6379/0
    redis_key_prefix: str = "quota-ledger"  # several deployments may share one Redis
    sign_in_per_ip_per_minute: int = 30  # POST /v1/auth/nonce and /v1/auth/token together
    relay_per_ip_per_minute: int = 30  # relays and typed data, per client address
    sign_in_max_nonces: int = 10_000  # sign-in nonces kept (issued in the last 10 min), in all
    # Gas the operator pays for consumers' messages, per day (a window from the first relay).
    # Withdrawals (revocations, revoke-all, unlink) have their own budgets, so that spending
    # one's budget on grants never stops a withdrawal (GDPR art. 7(3)).
    # A relayed grant costs about 65,000 gas, a withdrawal 30,000 to 45,000 (bench/gas.md).
    relay_gas_per_consumer_per_day: int = 2_000_000  # grants and global caps, one consumer
    withdrawal_gas_per_consumer_per_day: int = 1_000_000  # withdrawals, one consumer
    relay_gas_per_day: int = 200_000_000  # grants and global caps, every consumer together
    withdrawal_gas_per_day: int = 100_000_000  # withdrawals, every consumer together
    max_body_bytes: int = 2 * 1024 * 1024  # JSON requests
    max_upload_bytes: int = 200 * 1024 * 1024  # CSV scrub and list uploads

    @model_validator(mode="after")
    def _secrets_are_real(self) -> Settings:
        if self.environment is Environment.DEVELOPMENT:
            return self
        if self.operator_key is None or self.operator_key.get_secret_value() == DEV_OPERATOR_KEY:
            raise ValueError("QL_OPERATOR_KEY must be set to a real key outside development")
        if self.contact_salt is None or self.contact_salt.get_secret_value() == DEV_CONTACT_SALT:
            raise ValueError("QL_CONTACT_SALT must be set to a real secret outside development")
        if (
            self.session_secret is None
            or self.session_secret.get_secret_value() == DEV_SESSION_SECRET
        ):
            raise ValueError("QL_SESSION_SECRET must be set to a real secret outside development")
        if self.chain is ChainKind.RPC and not self.rpc_url:
            raise ValueError("QL_RPC_URL is required with QL_CHAIN=rpc")
        return self

    @model_validator(mode="after")
    def _link_sender_usable(self) -> Settings:
        if self.link_sender is LinkSender.WEBHOOK and not (
            self.link_webhook_url and self.link_webhook_secret
        ):
            raise ValueError("QL_LINK_SENDER=webhook needs QL_LINK_WEBHOOK_URL and _SECRET")
        if self.link_sender is LinkSender.OUTBOX and self.environment is not (
            Environment.DEVELOPMENT
        ):
            # The outbox keeps codes readable in the database: a development tool only.
            raise ValueError("QL_LINK_SENDER=outbox is for development: configure a webhook")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """SQLAlchemy URL: ``QL_DATABASE_URL`` or a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ledger.sqlite3').resolve()}"

    @property
    def access_log_enabled(self) -> bool:
        if self.access_log is not None:
            return self.access_log
        return self.environment is Environment.DEVELOPMENT

    @property
    def operator_private_key(self) -> str:
        return self.operator_key.get_secret_value() if self.operator_key else DEV_OPERATOR_KEY

    @property
    def session_secret_bytes(self) -> bytes:
        secret = (
            self.session_secret.get_secret_value() if self.session_secret else DEV_SESSION_SECRET
        )
        return secret.encode()

    @property
    def sign_in_authority(self) -> str:
        return self.sign_in_domain or f"{self.api_host}:{self.api_port}"

    @property
    def sign_in_resource(self) -> str:
        return self.sign_in_uri or f"http://{self.sign_in_authority}"

    @property
    def contact_salt_bytes(self) -> bytes:
        salt = self.contact_salt.get_secret_value() if self.contact_salt else DEV_CONTACT_SALT
        return salt.encode()
