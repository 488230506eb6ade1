"""crawl: city list -> yt-dlp search -> videos.parquet -> downloaded videos (the paper's §3.1)."""
