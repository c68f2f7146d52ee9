"""Reading inbound e-mail: sender, subject, plain text, threading headers, ticket numbers."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpdesk.intake.domain.email import (
    Attachment,
    InboundEmail,
    UnreadableEmailError,
    html_to_text,
    list_attachments,
    parse_message,
    ticket_number_in,
    without_quoted_reply,
)

pytestmark = pytest.mark.unit


def _message(
    *,
    sender: str = '"Ann Example" <Ann.Example@Customer.EXAMPLE>',
    subject: str = "Printer on fire",
    plain: str | None = "It is on fire.\n",
    html: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "support@provider.example"
    message["Subject"] = subject
    message["Message-ID"] = "<m1@customer.example>"
    for name, value in (headers or {}).items():
        message[name] = value
    if plain is not None:
        message.set_content(plain)
    if html is not None:
        if plain is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    return message.as_bytes(policy=SMTP)


def test_reads_sender_subject_body_and_ids() -> None:
    raw = _message(headers={"In-Reply-To": "<n1@p>", "References": "<n0@p> <n1@p>"})
    email = parse_message(raw)
    assert email == InboundEmail(
        message_id="<m1@customer.example>",
        sender="ann.example@customer.example",
        sender_name="Ann Example",
        subject="Printer on fire",
        body="It is on fire.",
        in_reply_to="<n1@p>",
        references=("<n0@p>", "<n1@p>"),
        auto_submitted=False,
    )


def test_prefers_text_plain_over_html() -> None:
    email = parse_message(_message(plain="plain words\n", html="<p>html words</p>"))
    assert email.body == "plain words"


def test_html_only_body_loses_its_tags_scripts_and_entities() -> None:
    html = (
        "<html><head><title>t</title><style>p {color: red}</style></head>"
        "<body><p>Hello &amp; welcome</p><script>alert(1)</script>"
        "<div>Second<br>line</div></body></html>"
    )
    email = parse_message(_message(plain=None, html=html))
    assert email.body == "Hello & welcome\n\nSecond\nline"


def test_encoded_words_and_charsets_are_decoded() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen?= <j@kunde.example>\r\n"
        b"Subject: =?utf-8?b?RHJ1Y2tlciBrYXB1dHQ=?=\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Gr=FC=DFe\r\n"
    )
    email = parse_message(raw)
    assert (email.sender_name, email.subject, email.body) == ("Jürgen", "Drucker kaputt", "Grüße")


def test_an_unknown_charset_is_read_rather_than_refused() -> None:
    raw = b"From: a@b.example\r\nContent-Type: text/plain; charset=klingon\r\n\r\nqapla'\r\n"
    assert parse_message(raw).body == "qapla'"


def test_a_folded_subject_becomes_one_line() -> None:
    raw = b"From: a@b.example\r\nSubject: Re: [HD-100001]\r\n  the printer\r\n\r\nx\r\n"
    assert parse_message(raw).subject == "Re: [HD-100001] the printer"


def test_attachment_only_message_has_an_empty_body() -> None:
    message = EmailMessage()
    message["From"] = "a@b.example"
    message.set_content(b"\x00\x01", maintype="application", subtype="octet-stream")
    assert parse_message(message.as_bytes()).body == ""


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto-Submitted": "auto-replied"},
        {"Precedence": "bulk"},
        {"X-Autoreply": "yes"},
    ],
)
def test_automatic_replies_are_flagged(headers: dict[str, str]) -> None:
    assert parse_message(_message(headers=headers)).auto_submitted


def test_auto_submitted_no_is_a_person() -> None:
    assert not parse_message(_message(headers={"Auto-Submitted": "no"})).auto_submitted


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \r\n",
        b"\x00\xff\xfe\x89PNG garbage",
        b"just some words",
        b"Subject: no sender\r\n\r\nbody",
        b"From: Nobody\r\n\r\nbody",
        b"From: <>\r\n\r\nbody",
    ],
)
def test_unreadable_messages_raise_the_specific_error(raw: bytes) -> None:
    with pytest.raises(UnreadableEmailError):
        parse_message(raw)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    try:
        email = parse_message(raw)
    except UnreadableEmailError:
        return
    assert email.sender == email.sender.lower()
    assert "@" in email.sender


_header_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=80
).filter(lambda s: "\n" not in s and "\r" not in s)


@given(subject=_header_text, body=st.text(max_size=500))
def test_arbitrary_subjects_and_bodies_parse(subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = "someone@customer.example"
    message["Subject"] = subject
    message.set_content(body)
    email = parse_message(message.as_bytes())
    assert email.sender == "someone@customer.example"
    assert email.subject == " ".join(subject.split())


# -- ticket numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "number"),
    [
        ("[HD-100001] Printer on fire", "HD-100001"),
        ("Re: [HD-100001] Printer on fire", "HD-100001"),
        ("RE: AW: [ hd-100002 ] Drucker", "HD-100002"),
        ("About ticket HD-100003, still broken", "HD-100003"),
        ("HD-7", "HD-7"),
        ("see HD-100004 and [HD-100005]", "HD-100005"),  # the notifier's bracketed form wins
        ("Printer on fire", None),
        ("XHD-100001", None),
        ("HD-100001X", None),
        ("HD-", None),
        ("PHD-12 thesis", None),
        ("", None),
    ],
)
def test_ticket_number_in_subject(subject: str, number: str | None) -> None:
    assert ticket_number_in(subject) == number


@given(digits=st.integers(min_value=1, max_value=10**12), prefix=_header_text, rest=_header_text)
def test_the_notifier_subject_always_yields_its_number(digits: int, prefix: str, rest: str) -> None:
    # The notifier writes `[{number}] {subject}`; mail clients prepend Re:/AW:/Fwd:.
    subject = f"{prefix} [HD-{digits}] {rest}"
    assert ticket_number_in(subject) == f"HD-{digits}"


# -- replies ----------------------------------------------------------------------------------


def test_a_trailing_quote_and_its_attribution_are_dropped() -> None:
    body = (
        "Still broken after the restart.\n\n"
        "On Mon, 3 Mar 2025, Support wrote:\n> Try a restart\n>\n"
    )
    assert without_quoted_reply(body) == "Still broken after the restart."


def test_outlook_original_message_is_dropped() -> None:
    body = "Works now, thanks.\n\n-----Original Message-----\nFrom: Support\nSubject: x\n"
    assert without_quoted_reply(body) == "Works now, thanks."


def test_inline_answers_are_kept() -> None:
    body = "> Which printer?\nThe one on floor 2.\n> Since when?\nMonday."
    assert without_quoted_reply(body) == body


def test_a_reply_that_is_only_a_quote_is_kept_whole() -> None:
    body = "> Try a restart\n"
    assert without_quoted_reply(body) == body


def test_html_to_text_keeps_paragraphs() -> None:
    assert html_to_text("<p>a  b</p><p>c</p>") == "a b\n\nc"


def test_a_ticket_names_the_first_attachments_and_counts_the_rest() -> None:
    """Issue 21: 6,000 attachments made an event larger than the stream takes."""
    small = tuple(Attachment(f"{i}.pdf", "application/pdf", 10) for i in range(30))
    listed = list_attachments(small, max_count=20, max_bytes=16_384)
    assert [a.filename for a in listed.listed] == [f"{i}.pdf" for i in range(20)]
    assert listed.fields()["attachments_not_listed"] == {"count": 10, "bytes": 100}
    assert listed.note().endswith("19.pdf (10 bytes) and 10 more (100 bytes)]")
    # long names: the byte budget ends the list first
    long = tuple(Attachment("\u001f" * 255, "application/pdf", 1) for _ in range(20))
    named = list_attachments(long, max_count=20, max_bytes=16_384)
    assert 0 < len(named.listed) < 20
    assert len(named.listed) + named.unlisted == 20
    assert list_attachments((), 20, 16_384).fields() == {}
    assert list_attachments((), 20, 16_384).note() == ""
