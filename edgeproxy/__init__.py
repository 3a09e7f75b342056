"""edgeproxy: a self-hosted edge in one ASGI gateway."""

__version__ = "0.1.0"
