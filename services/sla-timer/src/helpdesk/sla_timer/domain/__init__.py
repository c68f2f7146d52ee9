"""Pure SLA rules: business calendars and clock folding (no I/O, no clock reads)."""

from helpdesk.sla_timer.domain.availability import (
    ClassAvailability,
    Outage,
    month_bounds,
    monthly_availability,
    outages_from_events,
)
from helpdesk.sla_timer.domain.calendar import (
    SEARCH_HORIZON_WEEKS,
    BusinessCalendar,
    NoOpenTimeError,
    require_aware,
)
from helpdesk.sla_timer.domain.clocks import (
    ClockKind,
    ClockStatus,
    Pause,
    PauseReason,
    SlaClock,
    TicketEvent,
    TicketSla,
    as_ticket_events,
    business_calendars,
    fold_ticket,
    vip_priority,
)
from helpdesk.sla_timer.domain.follow_ups import (
    FollowUpDue,
    FollowUpSchedule,
    WaitReason,
    auto_close_offset,
    follow_up_schedule,
    schedule_from,
)
from helpdesk.sla_timer.domain.report import ReportLine, percentile, sla_report

__all__ = [
    "SEARCH_HORIZON_WEEKS",
    "BusinessCalendar",
    "ClassAvailability",
    "ClockKind",
    "ClockStatus",
    "FollowUpDue",
    "FollowUpSchedule",
    "NoOpenTimeError",
    "Outage",
    "Pause",
    "PauseReason",
    "ReportLine",
    "SlaClock",
    "TicketEvent",
    "TicketSla",
    "WaitReason",
    "as_ticket_events",
    "auto_close_offset",
    "business_calendars",
    "fold_ticket",
    "follow_up_schedule",
    "month_bounds",
    "monthly_availability",
    "outages_from_events",
    "percentile",
    "require_aware",
    "schedule_from",
    "sla_report",
    "vip_priority",
]
