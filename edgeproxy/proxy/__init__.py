"""Upstream pools and the forwarding of one request."""
