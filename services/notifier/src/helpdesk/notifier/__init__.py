"""Helpdesk notifier."""
