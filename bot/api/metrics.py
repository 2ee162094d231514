"""Prometheus metrics of this process, plus stream depths read from Redis at scrape time."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest

WEBHOOKS = Counter("omnihub_webhooks_total", "Webhook requests by provider and HTTP status", ["provider", "status"])
STREAM_DEPTH = Gauge("omnihub_stream_pending", "Entries read but not yet acknowledged", ["stream"])

__all__ = ["CONTENT_TYPE_LATEST", "REGISTRY", "STREAM_DEPTH", "WEBHOOKS", "generate_latest"]
