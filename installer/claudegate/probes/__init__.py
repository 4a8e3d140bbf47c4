"""What the smoke test and the audit both use to reach a deployment from the outside.

- :mod:`.wire` -- the endpoint (domain, ports, path prefix, where TCP goes,
  parsed once from the public URL), the verifying TLS context, raw
  connections (own dial or a tunnel), exact request bytes, reading an
  answer with h11, and :func:`~.wire.poll` for "did the server answer
  early" with TLS 1.3 session tickets waited past.

Below the smoke test and the audit (the ``layers`` contract); import the
modules directly, this package re-exports nothing.
"""
