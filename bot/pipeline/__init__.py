"""The durable path of a message: ingest -> partitioned stream -> worker -> outbound stream -> sender."""
