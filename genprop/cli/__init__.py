"""Console entry point ``genprop-propagate`` and the command-line helpers it shares."""
