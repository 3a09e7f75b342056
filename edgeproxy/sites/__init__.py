"""Static sites: deployments, aliases, static serving, _redirects and _headers."""
