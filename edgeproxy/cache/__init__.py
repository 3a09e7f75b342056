"""The RFC 9111 shared HTTP cache: policy, store and the ASGI step that uses them."""
