"""Structured logs (``logs``) and Prometheus metrics (``metrics``), the same in both run modes."""
