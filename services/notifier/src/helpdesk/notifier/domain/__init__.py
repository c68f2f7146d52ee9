"""Pure notification rules (no I/O, no clock reads)."""
