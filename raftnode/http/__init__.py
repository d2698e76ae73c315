"""HTTP listeners: the client key-value API and the health/metrics endpoints (Tornado)."""
