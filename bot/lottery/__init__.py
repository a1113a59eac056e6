"""Lotteries: eligibility, entries, verifiable draws and rerolls."""
