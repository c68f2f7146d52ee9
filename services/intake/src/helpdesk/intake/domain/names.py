"""When two account names are the same name."""

from __future__ import annotations

import unicodedata


def name_key(name: str) -> str:
    """What account-name uniqueness compares: "Acme Ltd", "acme  ltd " and "ＡＣＭＥ Ltd" are
    one name (Unicode compatibility form, runs of white space as one space, no case)."""
    return unicodedata.normalize("NFKC", " ".join(name.split())).casefold()
