"""Checks and statistics of a build: verify-shards, stats (Table 1), figures."""
