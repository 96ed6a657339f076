"""Market data: candles, the Kraken client, synthetic and imported data (see DESIGN.md)."""
