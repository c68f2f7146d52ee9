"""The notifier's own settings (HELPDESK_NOTIFIER_*, HELPDESK_SMTP_RELAY_*), next to the
runtime's shared `Settings`."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from helpdesk.notifier.adapters.mail import DEFAULT_PORTAL_URL, SmtpSettings
from helpdesk.notifier.domain.retry import DEFAULT_SCHEDULE, MailRetryPolicy, RetryPolicy
from helpdesk.notifier.domain.ssrf import AllowList


class NotifierSettings(BaseSettings):
    """Webhook and mail configuration of one notifier process."""

    model_config = SettingsConfigDict(
        env_prefix="HELPDESK_NOTIFIER_", extra="ignore", populate_by_name=True
    )

    # Comma-separated CIDRs, addresses or host names exempt from the SSRF guard (tests: loopback).
    allow_targets: str = ""
    # The retry schedule in seconds after attempts 1, 2, ... (empty: the standard schedule).
    retry_schedule_seconds: str = ""
    retry_jitter: float = 0.1
    disable_after_hours: float = 5 * 24.0
    webhook_timeout_seconds: float = 15.0
    # How long the previous secret keeps signing after a rotation.
    rotation_overlap_hours: float = 24.0
    # Replays one subscription may ask for in any hour: each re-sends every event of its
    # window, so a caller without a limit could have the notifier flood its own receiver.
    replays_per_hour: int = 10
    mail_sender: str = "Helpdesk <support@helpdesk.local>"
    mail_reply_to: str | None = None
    mail_domain: str = "helpdesk.local"
    # The portal's address as people open it: a password reset mail links into it.
    portal_url: str = DEFAULT_PORTAL_URL
    # `make up` runs a local mail sink here.
    smtp_relay_host: str = Field(default="127.0.0.1", validation_alias="HELPDESK_SMTP_RELAY_HOST")
    smtp_relay_port: int = Field(default=2526, validation_alias="HELPDESK_SMTP_RELAY_PORT")
    smtp_timeout_seconds: float = 30.0
    # A failed SMTP submission is tried again after this long, doubling up to the cap; the mail
    # is given up (`notification.mail_failed`) after so many submissions or so long failing.
    mail_retry_seconds: float = 60.0
    mail_retry_max_seconds: float = 3600.0
    mail_max_attempts: int = 10
    mail_give_up_hours: float = 24.0
    # The managers' daily digest: at this local hour of this IANA time zone (the provider's).
    digest_hour: int = Field(default=7, ge=0, le=23)
    digest_timezone: str = "UTC"

    @property
    def allow_list(self) -> AllowList:
        """The SSRF guard's exemptions."""
        return AllowList.parse(self.allow_targets.split(","))

    @property
    def retry_policy(self) -> RetryPolicy:
        """The webhook retry schedule and limits."""
        steps = [s for s in self.retry_schedule_seconds.split(",") if s.strip()]
        schedule = tuple(timedelta(seconds=float(s)) for s in steps) or DEFAULT_SCHEDULE
        return RetryPolicy(
            schedule=schedule,
            jitter=self.retry_jitter,
            disable_after=timedelta(hours=self.disable_after_hours),
        )

    @property
    def smtp(self) -> SmtpSettings:
        """Where mail is submitted."""
        return SmtpSettings(
            host=self.smtp_relay_host,
            port=self.smtp_relay_port,
            sender=self.mail_sender,
            reply_to=self.mail_reply_to,
            timeout=self.smtp_timeout_seconds,
        )

    @property
    def mail_retry_policy(self) -> MailRetryPolicy:
        """When a failed mail is tried again, and when it is given up."""
        return MailRetryPolicy(
            first=timedelta(seconds=self.mail_retry_seconds),
            cap=timedelta(seconds=self.mail_retry_max_seconds),
            max_attempts=self.mail_max_attempts,
            give_up_after=timedelta(hours=self.mail_give_up_hours),
        )

    @property
    def digest_zone(self) -> ZoneInfo:
        """The time zone of the digest's hour."""
        return ZoneInfo(self.digest_timezone)
