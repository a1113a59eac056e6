"""Analytics: daily rollups of the activity log, group metrics, member tiers, group health, and
the charts and reports operators read them in."""
