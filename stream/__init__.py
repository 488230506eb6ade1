"""The streaming build: every video of a plan downloaded, filtered, detected, cut and deleted in one pass."""
