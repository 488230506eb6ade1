"""How shards are written: tasks and results, the writer loop, deterministic tars, progress, workers."""
