"""Pure SLA rules: business calendars and clock folding (no I/O, no clock reads)."""
