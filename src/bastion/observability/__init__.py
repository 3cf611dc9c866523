"""Live observability: Prometheus metrics fed by the same events the audit record gets."""
