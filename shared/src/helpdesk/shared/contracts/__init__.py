"""The payload models of every event type on `helpdesk.events`, registered on import.

Types are namespaced by the service that writes them: `account.*`, `agreement.*`, `contact.*`,
`ticket.*` (intake), `sla.*` (sla-timer), `billing.*` (billing), `notification.*` (notifier).
"""

from helpdesk.shared.contracts import accounts, billing, notifications, sla, tickets

__all__ = ["accounts", "billing", "notifications", "sla", "tickets"]
