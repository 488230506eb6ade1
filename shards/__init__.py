"""build-shards: valid person crops -> WebDataset tar shards; importers; statistics; verification."""
