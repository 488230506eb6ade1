"""filter: drop duplicate, short, static, VR and unreadable videos; person validity rules (§3.1)."""
