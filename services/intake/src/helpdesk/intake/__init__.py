"""Helpdesk intake."""
