"""Settings shared by every service, read from HELPDESK_* environment variables.

Defaults are those of the local stack that `make up` runs, so a service started by hand on a
developer machine just works.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_PORTS: dict[str, int] = {
    "intake": 8000,
    "sla_timer": 8001,
    "billing": 8002,
    "notifier": 8003,
    "portal": 8004,
}


class Settings(BaseSettings):
    """Runtime configuration of one service process."""

    model_config = SettingsConfigDict(env_prefix="HELPDESK_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic: str = "helpdesk.events"
    partitions: int = 12
    # The topic's durability: 1 / 1 on the local single broker; 3 / 2 in production.
    replication_factor: int = 1
    min_insync_replicas: int = 1
    database_url: str = Field(
        default="postgresql+asyncpg://helpdesk@127.0.0.1:5432/helpdesk",
        validation_alias=AliasChoices("DATABASE_URL", "HELPDESK_DATABASE_URL"),
    )
    admin_token: SecretStr = SecretStr("")
    http_host: str = "127.0.0.1"
    http_port: int | None = None
    log_level: str = "INFO"
    # Consumer runtime tuning.
    consumer_max_records: int = 5000
    # How long a fetch waits for records: also how often an idle partition's watermark (and so
    # a due SLA timer) moves; the broker's long poll runs on regardless, so short costs little.
    consumer_poll_ms: int = 50
    # A live loop with nothing due sleeps at most this long (it is woken by new state anyway).
    live_loop_max_idle_ms: int = 5000
    # A deadline is acted on this long after its instant, so that an event that met it just
    # before (still in another service's outbox, or relayed late) arrives first (ADR 0005).
    allowed_lateness_seconds: float = 2.0
    # processed_events rows older than this are pruned (a republished copy comes within seconds).
    dedup_retention_hours: float = 168.0
    # /readyz says caught up while every owned partition is at most this many records behind.
    ready_max_lag: int = 100
    outbox_batch_size: int = 1000
    outbox_poll_ms: int = 100
    # How long a replica's stop waits for its cancelled tasks before it ends without them.
    stop_timeout_seconds: float = 10.0
    # Idempotency-Key answers are kept this long; a claim whose request has run longer than
    # the lease is taken to be abandoned (its process died) and may be claimed again.
    idempotency_retention_hours: float = 24.0
    idempotency_lease_seconds: float = 300.0
    # The intake SMTP listener (0 disables it).
    smtp_port: int = 0
    # The largest inbound e-mail intake takes, over SMTP and over HTTP alike.
    email_max_bytes: int = 25 * 1024 * 1024
    # The receiving relays whose Authentication-Results headers (RFC 8601) intake believes, by
    # authserv-id (a JSON list: '["mx.provider.example"]'); mail they found forged is refused.
    email_trusted_relays: list[str] = Field(default_factory=list)
    # Comma-separated addresses or networks whose X-Helpdesk-Client-Address intake believes at
    # sign-in (the portal's; loopback, where `make up` runs it): docs/adr/0006.
    trusted_proxies: str = "127.0.0.1,::1"

    def port_for(self, service: str) -> int:
        """The HTTP port of `service`: HELPDESK_HTTP_PORT if set, else the contract's default."""
        return self.http_port if self.http_port is not None else SERVICE_PORTS[service]
