"""Admin for the Zalo channel."""
