"""The workspace files' schemas: one reader and writer per file."""
