"""One-off measurements behind bench/NOTES.md (profiles, rooflines, A/B of formulations); ``make bench`` runs the cheap ones."""
