"""The portal's settings, from HELPDESK_PORTAL_* environment variables (defaults: `make up`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PORTAL_PORT = 8004


class PortalSettings(BaseSettings):
    """Where the four APIs answer, and how the portal's cookies are set."""

    model_config = SettingsConfigDict(env_prefix="HELPDESK_PORTAL_", extra="ignore")

    intake_url: str = "http://127.0.0.1:8000"
    sla_timer_url: str = "http://127.0.0.1:8001"
    billing_url: str = "http://127.0.0.1:8002"
    notifier_url: str = "http://127.0.0.1:8003"
    # The same variables as every service's (HELPDESK_HTTP_HOST / HELPDESK_HTTP_PORT).
    http_host: str = Field(
        default="127.0.0.1",
        validation_alias=AliasChoices("HELPDESK_PORTAL_HTTP_HOST", "HELPDESK_HTTP_HOST"),
    )
    http_port: int = Field(
        default=PORTAL_PORT,
        validation_alias=AliasChoices("HELPDESK_PORTAL_HTTP_PORT", "HELPDESK_HTTP_PORT"),
    )
    #: `Secure` cookies (HTTPS only); off only for a local stack on plain http.
    secure_cookies: bool = True
    #: Key of the CSRF tokens' HMAC; a random one per process when unset (replicas share one).
    secret: SecretStr = SecretStr("")
    #: A session with less than this left is refreshed by the next page (sessions last 8 h).
    refresh_below_hours: float = 4.0
    #: The time zone staff see times in (contacts see their account's).
    staff_timezone: str = "UTC"
    #: How long a call to an API may take before the page says it is not answering.
    timeout_seconds: float = 10.0
