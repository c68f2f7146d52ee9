"""Helpdesk deploy."""
