"""Each client's view of the policy: the config's per-client overrides applied once, at start.

``client_filters`` in the gateway config maps a client name to overrides by
rule name (``off`` exempts the client, an action replaces the rule's). The
policies are built lazily per name and kept, so a request costs one dict
lookup; a client without overrides shares the base policy.
"""

from __future__ import annotations

from collections.abc import Mapping

from claudegate_gateway.filters.policy import FilterPolicy
from claudegate_gateway.filters.response import ResponseFilter

__all__ = ["ClientPolicies"]


class ClientPolicies:
    def __init__(self, policy: FilterPolicy, overrides: Mapping[str, Mapping[str, str]]) -> None:
        self.base = policy
        self._overrides = {name: dict(o) for name, o in overrides.items() if o}
        self._base_response = ResponseFilter.from_policy(policy)
        self._built: dict[str, tuple[FilterPolicy, ResponseFilter | None]] = {}

    def _get(self, client: str) -> tuple[FilterPolicy, ResponseFilter | None]:
        overrides = self._overrides.get(client)
        if overrides is None:
            return self.base, self._base_response
        built = self._built.get(client)
        if built is None:
            policy = self.base.for_client(overrides)
            built = self._built[client] = (policy, ResponseFilter.from_policy(policy))
        return built

    def request_policy(self, client: str) -> FilterPolicy:
        return self._get(client)[0]

    def response_filter(self, client: str) -> ResponseFilter | None:
        """None when no response rule applies to this client: the relay then adds nothing."""
        return self._get(client)[1]
