"""`python -m helpdesk.portal serve`."""

from helpdesk.portal.main import main

main()
