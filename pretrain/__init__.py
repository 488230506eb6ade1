"""pretrain: Re-ID-aware MoCo v2 on the shards (the paper's §4 and §5.1)."""
