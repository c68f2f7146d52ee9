"""Helpdesk billing."""
