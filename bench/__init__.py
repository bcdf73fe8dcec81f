"""Benchmarks of directcall (see docs/performance.md); each ``bench/<name>.py`` is a command."""
