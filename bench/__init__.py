"""Benchmarks of the Helpdesk runtime (`make bench`, or `uv run python -m bench`)."""
