"""A helper module (never a route): state that lives as long as the deployment's code."""

CALLS: list[str] = []
