"""The admin HTTP API, served on the same event loop as the proxy."""
