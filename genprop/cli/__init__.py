"""Console entry points: ``genprop-propagate`` and ``genprop-eval``."""
