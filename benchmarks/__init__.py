"""lrrules' benchmarks: ``make bench`` or ``python -m benchmarks`` writes RESULTS.md and results.json."""
