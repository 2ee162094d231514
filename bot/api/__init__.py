"""The HTTP face of the hub: provider webhooks, the `/api/v1` API, health and metrics."""
