"""`python -m helpdesk.sla_timer`."""

from helpdesk.sla_timer.main import main

main()
