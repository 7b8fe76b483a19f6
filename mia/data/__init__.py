"""Market data: bar schema, contract specs, CME calendar, synthetic market, ingest, store."""
