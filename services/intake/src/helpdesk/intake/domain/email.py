"""Inbound e-mail: what intake needs from an RFC 5322 message, and nothing else.

Pure: bytes in, a frozen `InboundEmail` out. Routing (which contact, which ticket) is the
service layer's job; here is only the reading of the message and of the ticket number in its
subject. A message that cannot be read raises `UnreadableEmailError`, never anything else,
because the input comes from anyone on the Internet.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from email import message_from_bytes
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.policy import default
from html.parser import HTMLParser

# Intake's ticket numbers are `HD-` and digits (commands.next_ticket_number); the notifier
# puts them in brackets at the start of its subjects: `[HD-100001] Printer on fire`.
_BRACKETED = re.compile(r"\[\s*(HD-\d{1,18})\s*\]", re.IGNORECASE)
# A bare number counts too (a customer may type it by hand), but not inside a longer token.
_BARE = re.compile(r"(?<![A-Za-z0-9-])(HD-\d{1,18})(?![0-9A-Za-z])", re.IGNORECASE)

# RFC 3834 and the de-facto headers of auto-responders: answering or threading these would
# let an out-of-office reply reopen a ticket, or two auto-responders loop forever.
_AUTO_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_AUTO_HEADERS = ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")

# The attribution line a mail client writes above the quoted original.
_ATTRIBUTION = re.compile(r"^\s*(On\b.*\bwrote:|-+\s*Original Message\s*-+)\s*$", re.IGNORECASE)


class UnreadableEmailError(ValueError):
    """The bytes are not an e-mail intake can act on (no sender, or not a message at all)."""


@dataclass(frozen=True)
class Attachment:
    """What is kept of an attachment: intake stores no files, only that one was sent."""

    filename: str
    content_type: str
    size: int  # bytes, decoded

    def view(self) -> dict[str, object]:
        """JSON-ready."""
        return {"filename": self.filename, "content_type": self.content_type, "size": self.size}


@dataclass(frozen=True)
class AttachmentList:
    """The attachments a ticket names: the first ones in full, the rest only counted."""

    listed: tuple[Attachment, ...]
    unlisted: int = 0
    unlisted_bytes: int = 0

    def fields(self) -> dict[str, object]:
        """What the ticket's `fields` keep of them (nothing when there are none)."""
        fields: dict[str, object] = {}
        if self.listed:
            fields["attachments"] = [a.view() for a in self.listed]
        if self.unlisted:
            fields["attachments_not_listed"] = {
                "count": self.unlisted,
                "bytes": self.unlisted_bytes,
            }
        return fields

    def note(self) -> str:
        """A line naming them (intake keeps no files), or nothing."""
        if not self.listed and not self.unlisted:
            return ""
        listed = ", ".join(f"{a.filename} ({a.size} bytes)" for a in self.listed)
        if self.unlisted:
            more = f"{self.unlisted} more ({self.unlisted_bytes} bytes)"
            listed = f"{listed} and {more}" if listed else more
        return f"\n\n[Attachments not stored: {listed}]"


def list_attachments(
    attachments: tuple[Attachment, ...], max_count: int, max_bytes: int
) -> AttachmentList:
    """The first attachments whose metadata, as JSON, fit `max_bytes` (and at most `max_count`
    of them); the others are counted with their total size. A message may carry thousands of
    attachments, and the ticket's event must stay small whatever their names are."""
    listed: list[Attachment] = []
    used = 0
    for attachment in attachments:
        size = len(json.dumps(attachment.view(), ensure_ascii=False).encode()) + 1
        if len(listed) == max_count or used + size > max_bytes:
            break
        listed.append(attachment)
        used += size
    rest = attachments[len(listed) :]
    return AttachmentList(tuple(listed), len(rest), sum(a.size for a in rest))


@dataclass(frozen=True)
class InboundEmail:
    """The parts of an inbound message that intake uses."""

    message_id: str | None
    sender: str  # the From address, lower-cased
    sender_name: str
    subject: str
    body: str  # plain text: the text/plain part, else the text/html part without tags
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_submitted: bool = False
    attachments: tuple[Attachment, ...] = ()
    #: The values of its `Authentication-Results` headers (domain/mail_authentication.py).
    authentication_results: tuple[str, ...] = ()


def parse_message(raw: bytes) -> InboundEmail:
    """Read an RFC 5322 message; raise `UnreadableEmailError` if it has no usable sender."""
    if not raw.strip():
        raise UnreadableEmailError("the message is empty")
    try:
        message = message_from_bytes(raw, policy=default)
        assert isinstance(message, EmailMessage)  # what policy.default builds
        sender, name = _sender(message)
        message_id = _message_id(message.get("Message-ID"))
        return InboundEmail(
            message_id=storable(message_id) if message_id else None,
            sender=storable(sender),
            sender_name=storable(name),
            subject=storable(_one_line(str(message.get("Subject") or ""))),
            body=storable(_body(message)),
            in_reply_to=_message_id(message.get("In-Reply-To")),
            references=tuple(_message_ids(str(message.get("References") or ""))),
            auto_submitted=_is_automatic(message),
            attachments=tuple(_attachments(message)),
            authentication_results=tuple(
                str(value) for value in message.get_all("Authentication-Results") or ()
            ),
        )
    except UnreadableEmailError:
        raise
    # The email package parses leniently but still raises assorted errors (IndexError,
    # LookupError, HeaderParseError, ...) on hostile headers; all of them mean "unreadable".
    except Exception as exc:
        raise UnreadableEmailError(f"the message cannot be parsed: {exc}") from exc


def ticket_number_in(subject: str) -> str | None:
    """The ticket number a subject refers to (`[HD-100001]` first, else a bare `HD-100001`)."""
    found = _BRACKETED.search(subject) or _BARE.search(subject)
    if found is None:
        return None
    return "HD-" + found.group(1)[3:]


def without_quoted_reply(body: str) -> str:
    """The new text of a reply: the quoted original at its end (`> ...`) is dropped.

    Only a trailing quote goes, with the attribution line above it; inline answers between
    quoted lines are kept whole. A reply that is nothing but a quote is returned unchanged.
    """
    lines = body.splitlines()
    end = len(lines)
    while end > 0 and (lines[end - 1].startswith(">") or not lines[end - 1].strip()):
        end -= 1
    quoted = any(line.startswith(">") for line in lines[end:])
    if not quoted:
        # Outlook quotes without `>`: everything under its separator is the original.
        for i, line in enumerate(lines):
            if re.match(r"^\s*-+\s*Original Message\s*-+\s*$", line, re.IGNORECASE):
                end, quoted = i, True
                break
    if not quoted:
        return body
    while end > 0 and not lines[end - 1].strip():
        end -= 1
    if end > 0 and _ATTRIBUTION.match(lines[end - 1]):
        end -= 1
    kept = "\n".join(lines[:end]).strip()
    return kept or body


def storable(text: str) -> str:
    """`text` without what no database column can hold: NUL characters are removed, and bytes
    that were not text (kept as lone surrogates by the parser) become `?`."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


# -- parts ------------------------------------------------------------------------------------


def _attachments(message: EmailMessage) -> list[Attachment]:
    found = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        found.append(
            Attachment(
                filename=storable(part.get_filename() or "(unnamed)")[:255],
                content_type=storable(part.get_content_type())[:255],
                size=len(payload) if isinstance(payload, bytes) else 0,
            )
        )
    return found


def _sender(message: EmailMessage) -> tuple[str, str]:
    header = message.get("From")
    if header is None:
        raise UnreadableEmailError("the message has no From header")
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    for address in addresses:
        if address.username and address.domain:
            return address.addr_spec.lower(), address.display_name.strip()
    raise UnreadableEmailError("the From header holds no e-mail address")


def _message_id(value: object) -> str | None:
    ids = _message_ids(str(value or ""))
    if ids:
        return ids[0]
    text = str(value or "").strip()
    return text or None


def _message_ids(value: str) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _is_automatic(message: EmailMessage) -> bool:
    auto_submitted = str(message.get("Auto-Submitted") or "").strip().lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if str(message.get("Precedence") or "").strip().lower() in _AUTO_PRECEDENCE:
        return True
    return any(message.get(name) is not None for name in _AUTO_HEADERS)


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = _text_of(part)
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    return _tidy(text)


def _text_of(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError):
        # An unknown or lying charset: keep what can be read rather than refuse the message.
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    if isinstance(content, bytes):
        return content.decode("utf-8", errors="replace")
    return str(content)


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    tidy = "\n".join(lines).strip("\n")
    # Runs of blank lines (typical of converted HTML) collapse to one.
    return re.sub(r"\n{3,}", "\n\n", tidy)


# -- HTML to text -----------------------------------------------------------------------------

_BLOCKS = frozenset(
    {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr"}
)
_INVISIBLE = frozenset({"script", "style", "head", "title"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE:
            self._hidden += 1
        elif tag in _BLOCKS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _INVISIBLE:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.chunks.append(data)


def html_to_text(markup: str) -> str:
    """The visible text of an HTML body: tags, scripts and styles dropped, entities decoded."""
    extractor = _TextExtractor()
    extractor.feed(markup)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.chunks).split("\n"))
    return "\n".join(lines).strip()
