"""Pure billing rules: rating time against plans (no I/O, no clock reads)."""
