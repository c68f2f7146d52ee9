"""Pure ticket, account and agreement rules of intake: no I/O, no clock reads."""
