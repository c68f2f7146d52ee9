"""The agreement contract shared by all four services.

Intake validates a PUT /v1/accounts/{id}/agreement body with `resolve_agreement` and stores the
resulting `Agreement` in an `agreement.*` event; the SLA timer, billing and the notifier read it
back with `Agreement.model_validate`. `list_presets` is what GET /v1/agreement-presets lists: one
preset modelled on each seed policy. `agreement_errors` turns a validation failure into the
field/reason pairs of an RFC 9457 problem+json body.

Pure: no I/O, no clock reads, no framework imports, so `domain/` packages may import it.
"""

from helpdesk.shared.agreements.models import (
    MAX_CENTS,
    MAX_MINUTES,
    PRIORITIES,
    UNION_TAGS,
    WEEKDAYS,
    Agreement,
    Calendar,
    ContractModel,
    EscalationTarget,
    EscalationTier,
    FairUse,
    FollowUp,
    Holiday,
    MaintenanceWindow,
    OneOffHoliday,
    PartnerRules,
    Plan,
    PlanKind,
    Priority,
    QueueOrder,
    RequiredFields,
    ScopeCatalogue,
    Target,
    Targets,
    TicketKind,
    Weekday,
    WeeklyInterval,
    WorkType,
    YearlyHoliday,
    clock_minutes,
)
from helpdesk.shared.agreements.presets import (
    PlanVariant,
    Preset,
    get_preset,
    list_presets,
    preset_names,
)
from helpdesk.shared.agreements.resolve import (
    FieldError,
    agreement_errors,
    deep_merge,
    field_path,
    resolve_agreement,
)

__all__ = [
    "MAX_CENTS",
    "MAX_MINUTES",
    "PRIORITIES",
    "UNION_TAGS",
    "WEEKDAYS",
    "Agreement",
    "Calendar",
    "ContractModel",
    "EscalationTarget",
    "EscalationTier",
    "FairUse",
    "FieldError",
    "FollowUp",
    "Holiday",
    "MaintenanceWindow",
    "OneOffHoliday",
    "PartnerRules",
    "Plan",
    "PlanKind",
    "PlanVariant",
    "Preset",
    "Priority",
    "QueueOrder",
    "RequiredFields",
    "ScopeCatalogue",
    "Target",
    "Targets",
    "TicketKind",
    "Weekday",
    "WeeklyInterval",
    "WorkType",
    "YearlyHoliday",
    "agreement_errors",
    "clock_minutes",
    "deep_merge",
    "field_path",
    "get_preset",
    "list_presets",
    "preset_names",
    "resolve_agreement",
]
