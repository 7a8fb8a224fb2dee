"""Data-pipeline benchmark (``make bench-data``; ``python -m benchmarks.data``).

``run`` drives it; ``datasets`` prepares what is measured, ``jobs`` builds and times the jobs,
``stages`` times each stage of building a sample and the decode floor, ``ray_scaling`` the Ray
speedups, ``projection`` the cost of a full SA-V run and ``table`` the markdown report.
"""
