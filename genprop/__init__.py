"""genprop package."""
