"""Daily check-ins: which day a check-in counts for, streaks with their grace, points."""
