"""Helpdesk shared."""
