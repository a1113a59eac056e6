"""Light-touch moderation: first-message checks for newcomers, actions with a log, dry runs."""
