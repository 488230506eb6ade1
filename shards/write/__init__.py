"""How shards are written: tasks and results, the plan and its check, the writer loop, deterministic
tars, the part files a resume reads, the tables."""
