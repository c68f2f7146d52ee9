"""The web portal: customers and staff, served by the four public APIs."""
