"""Helpdesk sla_timer."""
