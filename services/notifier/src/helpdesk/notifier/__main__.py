"""`python -m helpdesk.notifier`."""

from helpdesk.notifier.main import main

main()
