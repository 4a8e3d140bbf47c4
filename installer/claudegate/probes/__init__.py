"""The one probe stack: what the smoke test and the audit send to a deployment, and how they judge it.

- :mod:`.wire` -- the endpoint (domain, ports, path prefix, where TCP goes,
  parsed once from the public URL), the verifying TLS context, raw
  connections (own dial or a tunnel), exact request bytes, reading an
  answer with h11, and :func:`~.wire.poll` for "did the server answer
  early" with TLS 1.3 session tickets waited past.
- :mod:`.tls` -- the handshake and the served certificate.
- :mod:`.http` -- the httpx client (SNI and Host on the domain, TCP to the
  connect host), one request with a left-over 429 waited out, Anthropic's
  error shape and the security headers.
- :mod:`.sse` -- the event-stream parser and the order of a message stream.
- :mod:`.api` -- redirect, 401s, models, count_tokens, a streamed message.
- :mod:`.pace` -- the gateway's paced stream: nothing on the way buffers.
- :mod:`.body` -- the oversize body over a raw exchange.
- :mod:`.limits` -- the burst that must provoke a 429, the allowlist.
- :mod:`.verdict` -- :class:`~.verdict.Failed` / :class:`~.verdict.Skipped`.
- :mod:`.wait` -- :func:`~.wait.pause`, every wait, interrupted by Cancel.

Below the smoke test and the audit (the ``layers`` contract); import the
modules directly, this package re-exports nothing.
"""
