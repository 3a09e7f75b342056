"""Loading, validating and reloading `rules.yaml`."""
