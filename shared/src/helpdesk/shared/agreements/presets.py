"""The agreement presets: one modelled on each of the five seed policies (docs/policies.md).

A preset is a starting point, not a product tier: an account picks one and overrides what its
contract says differently (`resolve_agreement`). Where a seed is silent the preset still has to
be a complete agreement, so each description says which figures come from the seed and which
are defaults chosen here. Defaults used across presets:

- prices a seed does not name: the monthly fee is 0 (the account sets its own; a made-up fee
  would be billed without anyone agreeing to it), and time and materials are charged at $150/h
  in 15-minute increments, the only rate and increment any seed publishes (seed 000);
- business hours are the account's local hours: they take the account's time zone when it has
  one, else America/New_York (every seed provider is in the US), and the public holidays of the
  account's country (US when it has none) as the `holidays` library resolves them, observed days
  included; an agreement body overrides `calendars.<name>.timezone`, `country` and
  `subdivision`, adds dates with `holidays` and keeps dates open with `removed_holidays`;
- follow-ups (reminders, then close `no_response`) only where the seed describes them (seed 003
  § 4.2.2); every other preset has none, and an account adds `follow_up` to have them;
- where a seed has no response or resolution commitment, the target is null: the product does
  not invent a promise the provider did not make.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Self

from pydantic import Field, model_validator

from helpdesk.shared.agreements.models import (
    WEEKDAYS,
    Agreement,
    Calendar,
    ContractModel,
    EscalationTarget,
    FairUse,
    FollowUp,
    PartnerRules,
    Plan,
    RequiredFields,
    ScopeCatalogue,
    Target,
    Targets,
    Weekday,
    WeeklyInterval,
)

HOUR = 60
#: The only published rate among the seeds (seed 000 Hourly, $150/hour), in cents.
DEFAULT_HOURLY_RATE_CENTS = 15_000
DEFAULT_BUSINESS_TIMEZONE = "America/New_York"
#: Whose public holidays a preset's business hours observe when the account names no country.
DEFAULT_COUNTRY = "US"
#: Seed 001's end-user categories: unsupported, unless the partner has the end-user support plan.
END_USER_CATEGORIES = ("end_user_support", "end_user_devices", "end_user_portals")


class PlanVariant(ContractModel):
    """One of several plans a seed offers side by side (seed 000: Hourly, Starter, Pro)."""

    title: str
    description: str
    plan: Plan


class Preset(ContractModel):
    """A named, complete agreement modelled on one seed policy."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    title: str
    #: Which seed document the preset follows ("000" … "004").
    seed: Annotated[str, Field(pattern=r"^[0-9]{3}$")]
    description: str
    agreement: Agreement
    #: Alternative plans; the agreement carries the default one. Empty when the seed has one plan.
    plan_variants: dict[str, PlanVariant] = Field(default_factory=dict)
    default_plan_variant: str | None = None
    #: Terms the seed relies on but cannot know, which every PUT naming the preset must set:
    #: dotted path in the agreement body -> what to put there and why (seed 001's margin).
    operator_must_set: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # A preset is data in code; these checks catch an edit that makes it contradict itself.
        if self.agreement.preset != self.name:
            raise ValueError("agreement.preset must equal the preset's name")
        if self.plan_variants:
            default = self.default_plan_variant
            if default not in self.plan_variants:
                raise ValueError("default_plan_variant must name one of plan_variants")
            if self.agreement.plan_variant != default:
                raise ValueError("agreement.plan_variant must be the default variant")
            if self.agreement.plan != self.plan_variants[default].plan:
                raise ValueError("agreement.plan must be the default variant's plan")
        elif self.default_plan_variant is not None or self.agreement.plan_variant is not None:
            raise ValueError("a preset without plan_variants has no plan variant")
        return self


# --- building blocks ---------------------------------------------------------------------------


def _open(days: tuple[Weekday, ...], start: str, end: str) -> list[WeeklyInterval]:
    return [WeeklyInterval(day=day, start=start, end=end) for day in days]


def _around_the_clock() -> Calendar:
    # Time zone is immaterial for a calendar that never closes; UTC says so.
    return Calendar(timezone="UTC", weekly=_open(WEEKDAYS, "00:00", "24:00"))


def _business_hours(start: str, end: str) -> Calendar:
    return Calendar(
        timezone=DEFAULT_BUSINESS_TIMEZONE,
        weekly=_open(WEEKDAYS[:5], start, end),
        country=DEFAULT_COUNTRY,
    )


def _target(
    label: str, response_h: float | None, resolution_h: float | None, calendar: str
) -> Target:
    return Target(
        label=label,
        response_minutes=None if response_h is None else round(response_h * HOUR),
        resolution_minutes=None if resolution_h is None else round(resolution_h * HOUR),
        calendar=calendar,
    )


def _next_business_day(label: str, calendar: str) -> Target:
    return Target(label=label, response_business_days=1, calendar=calendar)


# --- seed 003: four-tier guide, 24×7 -----------------------------------------------------------


def _four_tier_24x7() -> Preset:
    name = "four_tier_24x7"
    return Preset(
        name=name,
        seed="003",
        title="Four priority tiers, 24×7 (seed 003, technical support guide)",
        description=(
            "Follows seed 003 (Dynamix 'Technical Support Guide'). "
            "§ 6.1 Priority Guidelines: P1 Critical 'Within 1 hour', escalation threshold "
            "'2 hours'; P2 High 2 h / 4 h; P3 Medium 24 h / 48 h; P4 Low 48 h / 96 h. The "
            "escalation threshold is the resolution target (§ 4.1: 'When a ticket is not "
            "resolved within the escalation threshold ... Dynamix Management is notified'). "
            "§ 2.3 After hours support: 'the same service response time and effort as they "
            "would during business hours' -> every priority runs on one 24×7 calendar. "
            "§ 5.1 Up-time: Network 99.99 %, Cloud 99 %, Operational 99 %, Business Voice/SIP "
            "99.99 % -> availability_targets network, cloud, operational, voice; § 5.2: "
            "scheduled maintenance is excluded (add maintenance_windows per event). "
            "§ 4.2.2: closes after 'repeated inquiries (3+)' -> three follow-ups a day apart, "
            "then closed no_response, both while waiting for information and while a "
            "resolution awaits confirmation ('to confirm whether the problem has been "
            "satisfactorily resolved'); the only preset with follow-ups. No holidays: the "
            "24×7 calendar never closes. "
            "§ 3.2 'number of affected users' -> affected_users required on open. "
            "§ 4.3.1/4.3.2 inclusions and exclusions -> scope catalogue (exclusions are "
            "unsupported). Contact roles and visibility (§ 1.3, 1.4) live on contacts, not "
            "here. Silent on price: plan 'managed' in USD with no fee (set your contract's) "
            "and $150/h time and materials for out-of-scope work."
        ),
        agreement=Agreement(
            preset=name,
            vip_treatment="next_higher_priority",
            calendars={"24x7": _around_the_clock()},
            targets=Targets(
                P1=_target("Critical", 1, 2, "24x7"),
                P2=_target("High", 2, 4, "24x7"),
                P3=_target("Medium", 24, 48, "24x7"),
                P4=_target("Low", 48, 96, "24x7"),
            ),
            follow_up=FollowUp(after_minutes=[1440, 2880, 4320], max_unanswered=3),
            plan=Plan(
                kind="managed",
                currency="USD",
                hourly_rate_cents=DEFAULT_HOURLY_RATE_CENTS,
                increment_minutes=15,
            ),
            scope_catalogue=ScopeCatalogue(
                in_scope=[
                    "installation",
                    "deployment",
                    "administration",
                    "configuration",
                    "maintenance",
                    "upgrades",
                    "features",
                    "functionality",
                ],
                unsupported=[
                    "uncertified_architectures",
                    "unsupported_or_unmaintained_software",
                    "end_of_support_products",
                    "damaged_or_modified_software",
                    "unapproved_add_ons",
                    "unauthorized_network_changes",
                    "unprotected_system_abuse",
                ],
            ),
            required_fields=RequiredFields(on_open=["affected_users"]),
            availability_targets={
                "network": 99.99,
                "cloud": 99.0,
                "operational": 99.0,
                "voice": 99.99,
            },
        ),
    )


# --- seed 000: cloud platform, three plans ------------------------------------------------------


def _cloud_platform_plans() -> dict[str, PlanVariant]:
    return {
        "hourly": PlanVariant(
            title="Hourly",
            description=(
                "'Pay by the hour', '$150/hour', 'Billed in 15-minute increments', 'Charged "
                "upon completion of service' (billed per ticket on resolution)."
            ),
            plan=Plan(
                kind="hourly",
                currency="USD",
                hourly_rate_cents=15_000,
                increment_minutes=15,
            ),
        ),
        "starter": PlanVariant(
            title="Starter",
            description=(
                "'$500/month', '20% discount off hourly pricing', '5-hours of Out-of-Scope "
                "support included per month', 'Charged at end of billing cycle'; beyond the "
                "5 hours at the discounted rate ($120/h), in 15-minute increments."
            ),
            plan=Plan(
                kind="monthly",
                currency="USD",
                hourly_rate_cents=15_000,
                increment_minutes=15,
                monthly_fee_cents=50_000,
                discount_percent=20,
                included_minutes=5 * HOUR,
            ),
        ),
        "pro": PlanVariant(
            title="Pro",
            description=(
                "'$875/month', '30% discount off hourly pricing', '5-hours of Out-of-Scope "
                "support included per month', 'Designated engineer assigned to your account', "
                "'Scheduled 15-minute meeting per month' (review_every_months 1); beyond the "
                "5 hours at $105/h, in 15-minute increments."
            ),
            plan=Plan(
                kind="monthly",
                currency="USD",
                hourly_rate_cents=15_000,
                increment_minutes=15,
                monthly_fee_cents=87_500,
                discount_percent=30,
                included_minutes=5 * HOUR,
                designated_engineer=True,
                review_every_months=1,
            ),
        ),
    }


def _cloud_platform() -> Preset:
    name = "cloud_platform"
    plans = _cloud_platform_plans()
    return Preset(
        name=name,
        seed="000",
        title="Cloud platform, in-scope free, three plans (seed 000, technical support scope)",
        description=(
            "Follows seed 000 (Conexlink 'Technical Support Scope' for MyCloudIT). "
            "'Service Levels' table -> plan_variants hourly, starter (the default) and pro; "
            "pick one with plan_variant. In-scope support is free, out-of-scope is charged. "
            "'Response Times': 'All severities can be logged ... 24 hours per day, 7 days per "
            "week, 365 days per year' -> one 24×7 calendar; Critical '4 Hours' -> P1, Moderate "
            "'12 hours' -> P2, Minimum '40 hours' -> P3; the seed has three severities, so P4 "
            "is Minimum too. 'Conexlink does not guarantee resolution times' -> no resolution "
            "targets (resolution_minutes null). 'We Support' tables -> in_scope; 'MyCloudIT "
            "Support Packages' -> out_of_scope (charged); 'We Do Not Support' -> unsupported. "
            "'For out-of-scope items we will respond with a statement of work' -> staff quote "
            "an out-of-scope ticket (minutes and cents), the contact approves or declines it, "
            "and usage lists out-of-scope work logged before the approval. "
            "'365 days per year' -> no holidays. The seed says nothing about closing "
            "unanswered tickets -> no follow-ups and no automatic close (add follow_up to have "
            "them)."
        ),
        plan_variants=plans,
        default_plan_variant="starter",
        agreement=Agreement(
            preset=name,
            plan_variant="starter",
            calendars={"24x7": _around_the_clock()},
            targets=Targets(
                P1=_target("Critical", 4, None, "24x7"),
                P2=_target("Moderate", 12, None, "24x7"),
                P3=_target("Minimum", 40, None, "24x7"),
                P4=_target("Minimum", 40, None, "24x7"),
            ),
            plan=plans["starter"].plan,
            scope_catalogue=ScopeCatalogue(
                in_scope=[
                    "portal",
                    "billing",
                    "azure",
                    "active_directory",
                    "remote_desktop_services",
                    "office_365",
                ],
                out_of_scope=[
                    "deployment_planning_and_design",
                    "cloud_infrastructure_configuration",
                    "custom_storage",
                    "storage_data_migration",
                    "microsoft_365_apps_and_licensing",
                    "custom_connectivity",
                    "security_assessment_and_hardening",
                ],
                unsupported=[
                    "third_party_applications",
                    "azure_recovery_services_jobs",
                    "azure_outages",
                    "rds_custom_licensing_and_server_configuration",
                    "rds_custom_certificates",
                    "rds_domain_changes",
                    "rds_custom_gpo",
                    "email_ftp_client_configuration",
                ],
            ),
        ),
    )


# --- seed 001: partner / reseller ---------------------------------------------------------------


def _partner_reseller() -> Preset:
    name = "partner_reseller"
    return Preset(
        name=name,
        seed="001",
        title="Partner escalations in business hours (seed 001, partner technical support policy)",
        description=(
            "Follows seed 001 (LogicCloud IT 'Partner Technical Support Policy'). 'All Support "
            "tickets are allotted a 24 business hour response time' -> every priority has a "
            "1440-minute response target on the business_hours calendar, Mon-Fri 09:00-17:00 "
            "(the seed names no hours: an 8-hour day is chosen, so 24 business hours are three "
            "business days), America/New_York until the account overrides "
            "calendars.business_hours.timezone, closed on the public holidays of the account's "
            "country (US when it names none) with the holidays library's observed days "
            "(Thanksgiving is closed; a Saturday holiday is observed on the Friday). No "
            "resolution commitment -> none. 'Tickets "
            "that must be forward to Engineering, are allotted a 72 business hour response "
            "time' -> escalation_targets.engineering 4320 business minutes (nine business "
            "days), met only by Engineering's own response: a public reply by staff whose tier "
            "is engineering, a comment with responds_for engineering, or the resolution (a "
            "front-line 'forwarded to Engineering' reply is no answer from Engineering). "
            "'Tickets that require the involvement with the end vendor ... are subject "
            "to that specific vendors response times' -> escalation_targets.vendor pauses the "
            "provider's clocks, and a vendor named on the escalation whose response time the "
            "operator lists in escalation_targets.vendor.vendors (none by default) runs that "
            "clock until the vendor hands the ticket back. 'For any submitted ticket, the "
            "following must be provided' -> "
            "required on open: partner_domain, customer_name, customer_domain, details, "
            "steps_taken; 'any error messages associated' is asked for only where there are "
            "some, so error_messages is optional (absent or empty is accepted), and the "
            "control-panel URL is asked for only 'if applicable', so it is not required "
            "either (add either to on_open where it always applies). Excessive escalations "
            "'will receive a warning'; one that "
            "'continues to have excessive escalations' is 'reverted to a full price account (AKA "
            "0% margin) until ... stopped, and then for a period of not less than 6 months' -> "
            "partner_rules: 5 or more flagged tickets within 30 days are excessive (the seed "
            "gives no number) and earn one warning; the margin is revoked only when 5 more are "
            "flagged after the warning while it stands (it lapses once 30 days pass without a "
            "flag), "
            "never by a single flag; each flag while revoked pushes the return back, and the "
            "margin returns 184 days after the last. The margin is the plan's discount_percent "
            "on billed work, and the seed cannot know it: every PUT of this preset must set "
            "plan.discount_percent (operator_must_set; 0 is allowed and means a revocation "
            "changes no invoice). Scope: partner billing and provider-level "
            "outages or malfunctions; end-user support is the partner's unless it has an "
            "end-user support plan: partner_rules.end_user_support_plan true moves "
            "end_user_support, end_user_devices and end_user_portals into scope and exempts "
            "the partner from the excessive-escalation rule. Partner support carries no charge "
            "in the seed: plan 'managed' in USD with no fee. The seed says nothing about "
            "closing unanswered tickets -> no follow-ups and no automatic close."
        ),
        agreement=Agreement(
            preset=name,
            calendars={"business_hours": _business_hours("09:00", "17:00")},
            targets=Targets(
                P1=_target("24 business hours", 24, None, "business_hours"),
                P2=_target("24 business hours", 24, None, "business_hours"),
                P3=_target("24 business hours", 24, None, "business_hours"),
                P4=_target("24 business hours", 24, None, "business_hours"),
            ),
            plan=Plan(
                kind="managed",
                currency="USD",
                hourly_rate_cents=DEFAULT_HOURLY_RATE_CENTS,
                increment_minutes=15,
            ),
            scope_catalogue=ScopeCatalogue(
                in_scope=["partner_billing", "provider_service_outage", "provider_malfunction"],
                unsupported=["end_user_support", "end_user_devices", "end_user_portals"],
            ),
            required_fields=RequiredFields(
                on_open=[
                    "partner_domain",
                    "customer_name",
                    "customer_domain",
                    "details",
                    "steps_taken",
                ]
            ),
            escalation_targets={
                "engineering": EscalationTarget(
                    response_minutes=72 * HOUR, calendar="business_hours"
                ),
                "vendor": EscalationTarget(pause_clocks=True),
            },
            partner_rules=PartnerRules(
                excessive_escalation_threshold=5,
                window_days=30,
                warnings_before_penalty=1,
                margin_restore_days=184,
            ),
        ),
        operator_must_set={
            "plan.discount_percent": (
                "the partner's margin, as a percent off the hourly rate of billed work (0 to "
                "100); seed 001 revokes it ('reverted to a full price account (AKA 0% margin)') "
                "after excessive escalations, so with 0 a revocation changes no invoice"
            )
        },
    )


# --- seed 002: small-business remote support ----------------------------------------------------


def _small_business_remote() -> Preset:
    name = "small_business_remote"
    return Preset(
        name=name,
        seed="002",
        title="Small-business remote support, office hours, fair use (seed 002)",
        description=(
            "Follows seed 002 (small-business remote support, 'Key Points'). 'Operating hours: "
            "M-F 8:30 AM to 5:30 PM ... and excluding holidays' -> business_hours calendar "
            "in America/New_York until the account sets its own zone, closed on the public "
            "holidays of the account's country (US when it names none) as the holidays "
            "library has them, observed days included: Thanksgiving is closed, and 4 July "
            "2026, a Saturday, closes Friday 3 July; an office open on one of them lists it in "
            "removed_holidays. It is also what after-hours work is measured against. 'We'll "
            "respond to urgent issues (An issue that impacts all users and no workaround is "
            "available) within 1 hour' -> P1 60 business minutes. 'Non-urgent issues we'll "
            "respond within 24 hours' -> P2-P4 response_business_days 1: one business day of "
            "the operating-hours calendar, the same local time on the next business day "
            "(Monday 09:00 -> Tuesday 09:00, Friday 16:00 -> Monday 16:00), as a customer "
            "reads '24 hours' of an office closed at night; a ticket reported while closed "
            "counts from the next opening, so it is due when the next business day closes "
            "(Monday 18:00 -> Tuesday 17:30); holidays are not business days. An account "
            "that means 24 business hours sets response_minutes 1440 and "
            "response_business_days null. 'Requests are typically handled first come first "
            "serve, but problems impacting more than one user are given priority' -> "
            "queue_order multi_user_first: tickets with affected_users above 1 first, each "
            "group in order of reporting (other presets: nearest deadline first). No "
            "resolution commitment -> none. 'Fair use: Up to "
            "30 mins of "
            "remote service per day' and 'If the ticket can't be finished in 30 minutes or "
            "less limited support may apply' -> fair_use 30 min per day and per ticket, remote "
            "work only; the contact is told by mail and by a public note on the ticket. "
            "After hours is 'an add-on ... at an extra cost' -> after_hours_billable "
            "with business_hours_calendar business_hours: a time entry whose worked_at lies "
            "outside those hours (or on a holiday) is billed as after-hours work at $150/h, "
            "and the technician's after_hours flag overrides that either way; an account with "
            "the add-on points targets at the included 24x7 calendar. "
            "'Limited support may apply' items -> out_of_scope; the exclusions list -> "
            "unsupported. Silent on price: monthly plan in USD with fee 0 (set yours) and "
            "$150/h for billable work. The seed says nothing about closing unanswered tickets "
            "-> no follow-ups and no automatic close."
        ),
        agreement=Agreement(
            preset=name,
            queue_order="multi_user_first",
            calendars={
                "business_hours": _business_hours("08:30", "17:30"),
                "24x7": _around_the_clock(),
            },
            targets=Targets(
                P1=_target("Urgent: all users affected, no workaround", 1, None, "business_hours"),
                P2=_next_business_day("Non-urgent", "business_hours"),
                P3=_next_business_day("Non-urgent", "business_hours"),
                P4=_next_business_day("Non-urgent", "business_hours"),
            ),
            plan=Plan(
                kind="monthly",
                currency="USD",
                hourly_rate_cents=DEFAULT_HOURLY_RATE_CENTS,
                increment_minutes=15,
                after_hours_billable=True,
                business_hours_calendar="business_hours",
            ),
            fair_use=FairUse(per_day_minutes=30, per_ticket_minutes=30, work_types=["remote"]),
            scope_catalogue=ScopeCatalogue(
                in_scope=[
                    "problem_troubleshooting",
                    "hardware_troubleshooting",
                    "software_troubleshooting",
                    "configuration_changes",
                ],
                out_of_scope=[
                    "immediate_remote_support",
                    "advanced_application_usage",
                    "operating_system_upgrades",
                    "printers",
                ],
                unsupported=[
                    "onsite_work",
                    "non_problem_work",
                    "project_and_maintenance_work",
                    "unsupported_technology",
                    "training_and_usage_assistance",
                    "warranty_voiding_illegal_or_unlicensed",
                ],
            ),
        ),
    )


# --- seed 004: managed support budget -----------------------------------------------------------


_NO_TARGET = "No response target (seed 004 states none)"


def _managed_budget() -> Preset:
    name = "managed_budget"
    return Preset(
        name=name,
        seed="004",
        title="Managed support budget, incidents covered (seed 004)",
        description=(
            "Follows seed 004 (Macktez 'Managed Support'). 'Included in the monthly fee: "
            "Incident response (break/fix) ... Onsite support when needed' -> plan 'managed'; "
            "'The following work is excluded: Service requests (new scopes of work), "
            "After-hours incident response, Research and troubleshooting (solution design) "
            "following incident resolution' -> excluded_kinds service_request and "
            "solution_design, after_hours_billable. Billing classifies each time entry: its "
            "worked_at outside business_hours_calendar (business_hours, holidays included) is "
            "after-hours work, and work on an incident after its resolution (until a reopen, "
            "and again after a reopened cycle is resolved) is solution design; the "
            "technician's after_hours and solution_design marks override either way, and the "
            "invoice line says which reason applied. Excluded work is 'billed separately, either "
            "as a pre-approved flat fee project or as a post-action invoice for time and "
            "materials' -> flat_fees per kind when agreed (none by default), else $150/h in "
            "15-minute increments; 'reviewed regularly and may be adjusted quarterly' -> "
            "review_every_months 3: billing emits billing.budget_reviewed for each quarter once "
            "it has ended and its last invoice's grace period has passed, and a new "
            "monthly_fee_cents takes effect from the start of the next quarter (the version's "
            "other terms at once); the review is mailed to the billing contacts and to "
            "plan.technical_account_manager (a staff id the operator sets: 'Regular reviews "
            "with your Technical Account Manager'). The "
            "seed states no response or resolution times ('as quickly as feasible' is no "
            "guarantee) -> no targets: no SLA clock runs, nothing is due, warned or breached, "
            "and the ticket's own history shows when it was answered; set "
            "targets.P1.response_minutes (and the others) where the contract names them. The "
            "seed names no fee or hours: fee 0 (set the budget); the business_hours calendar "
            "Mon-Fri 09:00-17:00 America/New_York (check your office's hours) with the public "
            "holidays of the account's country (US when it names none) stays, because "
            "'After-hours incident response' is work outside it. The seed says nothing about "
            "closing unanswered tickets -> no follow-ups and no automatic close."
        ),
        agreement=Agreement(
            preset=name,
            calendars={"business_hours": _business_hours("09:00", "17:00")},
            targets=Targets(
                P1=_target(_NO_TARGET, None, None, "business_hours"),
                P2=_target(_NO_TARGET, None, None, "business_hours"),
                P3=_target(_NO_TARGET, None, None, "business_hours"),
                P4=_target(_NO_TARGET, None, None, "business_hours"),
            ),
            plan=Plan(
                kind="managed",
                currency="USD",
                hourly_rate_cents=DEFAULT_HOURLY_RATE_CENTS,
                increment_minutes=15,
                excluded_kinds=["service_request", "solution_design"],
                after_hours_billable=True,
                business_hours_calendar="business_hours",
                review_every_months=3,
            ),
            scope_catalogue=ScopeCatalogue(
                in_scope=["break_fix", "onsite_support", "technical_account_management"],
                out_of_scope=["new_scope_of_work", "root_cause_research"],
            ),
        ),
    )


# --- registry -----------------------------------------------------------------------------------


@cache
def _registry() -> Mapping[str, Preset]:
    # Built on first use, not at import: a service imports this module without paying for it.
    presets = (
        _cloud_platform(),
        _partner_reseller(),
        _small_business_remote(),
        _four_tier_24x7(),
        _managed_budget(),
    )
    return {preset.name: preset for preset in presets}


def preset_names() -> list[str]:
    """Names of all presets, in seed order (000 … 004)."""
    return list(_registry())


def list_presets() -> list[Preset]:
    """All presets in seed order, as GET /v1/agreement-presets lists them.

    Copies are returned: the models are frozen, but their dicts and lists are not, and a caller
    that mutated a shared preset would change it for the life of the process.
    """
    return [preset.model_copy(deep=True) for preset in _registry().values()]


def get_preset(name: str) -> Preset | None:
    """The preset called `name` (a copy), or None."""
    preset = _registry().get(name)
    return None if preset is None else preset.model_copy(deep=True)
