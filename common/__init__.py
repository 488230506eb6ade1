"""Small helpers shared by every stage: settings, atomic files, errors, logging."""
