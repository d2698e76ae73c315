"""The replicated key-value state machine and the service built on it."""
