"""Workload programs the catalog drives (run as scripts by path, shipped in the package)."""
