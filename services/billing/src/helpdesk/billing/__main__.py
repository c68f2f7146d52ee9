"""`python -m helpdesk.billing`."""

from helpdesk.billing.main import main

main()
