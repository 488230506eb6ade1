"""finetune / evaluate: Re-ID transfer and the Market-1501 evaluation protocol (§4.3, §5)."""
