"""Application errors: what a service layer refuses, independent of HTTP.

A use case raises one of these; the web app maps every one of them, in one handler, to an
RFC 9457 problem (`status`, `title`, `detail`, and `errors` naming each field with a reason).
`helpdesk.shared.web.Problem` stays for what only the HTTP edge knows (malformed bodies,
authentication, If-Match syntax).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class ApplicationError(Exception):
    """A refusal of the service layer; nothing was changed."""

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad Request"

    def __init__(self, detail: str, *, errors: Sequence[dict[str, str]] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        #: `{"field": ..., "reason": ...}` for each field concerned
        self.errors = list(errors)


class NotFound(ApplicationError):  # noqa: N818 - named after the answer it gives
    """No such resource, or not one the caller may see (so they learn nothing of it)."""

    status = 404
    title = "Not Found"

    @classmethod
    def of(cls, what: str) -> NotFound:
        """`No such <what>.`"""
        return cls(f"No such {what}.")


class Forbidden(ApplicationError):  # noqa: N818 - named after the answer it gives
    """The caller is known but may not do this."""

    status = 403
    title = "Forbidden"


class Conflict(ApplicationError):  # noqa: N818 - named after the answer it gives
    """The command conflicts with the current state (a taken name, a concurrent change)."""

    status = 409
    title = "Conflict"


class Invalid(ApplicationError):  # noqa: N818 - named after the answer it gives
    """One or more fields are invalid, each with its reason."""

    status = 422
    title = "Invalid request"


class InvalidField(Invalid):
    """One field is invalid: `<field> <reason>; nothing was changed.` unless told otherwise."""

    def __init__(self, field: str, reason: str, detail: str | None = None) -> None:
        super().__init__(
            detail or f"{field} {reason}; nothing was changed.",
            errors=[{"field": field, "reason": reason}],
        )
        self.field = field
        self.reason = reason
