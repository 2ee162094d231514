"""One module per messenger: verify and parse what the provider posts, send what the hub renders."""
