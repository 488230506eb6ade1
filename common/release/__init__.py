"""The official LUPerson release formats shared by crawl and build-shards (``vnames.txt`` lines)."""
