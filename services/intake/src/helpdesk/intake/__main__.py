"""`python -m helpdesk.intake`."""

from helpdesk.intake.main import main

main()
