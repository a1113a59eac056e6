"""Light-touch moderation: a newcomer's first messages are checked, and what looks like spam is
held for the admins."""
