"""The admin API under /_edge/api/."""
