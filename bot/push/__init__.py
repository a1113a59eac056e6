"""Messages the bot starts on its own: broadcasts and live sessions, through one queue that keeps
each group's quiet hours and daily cap and sends each message once."""
