"""Intake's service layer: one module of use cases per thing people manage.

`tickets` (open, every lifecycle command, the e-mail reply, the auto-close), `accounts`
(accounts and their agreements) and `people` (contacts, staff, API keys). A use case runs inside
one unit of work (`ports.IntakeUnitOfWork`, one transaction): it loads state, asks `domain/`,
and emits events; it raises `helpdesk.shared.errors` application errors. It knows neither HTTP
nor SQL: the PostgreSQL unit of work is in `adapters/`, an in-memory one in the unit tests.
"""
