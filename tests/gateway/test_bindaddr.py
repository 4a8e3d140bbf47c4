"""A listen host given as a network binds this host's own address in it, or fails clearly."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from claudegate_gateway.bindaddr import listen_host
from claudegate_gateway.config import ConfigError, parse_config
from tests.support.ports import free_port


def test_plain_hosts_pass_through() -> None:
    assert listen_host("127.0.0.1") == "127.0.0.1"
    assert listen_host("0.0.0.0") == "0.0.0.0"


def test_a_network_gives_this_hosts_address_in_it() -> None:
    # Loopback is the one network every test machine has an address in.
    assert listen_host("127.0.0.0/8") == "127.0.0.1"


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        # TEST-NET-2: no address of ours (a UDP connect() only asks for a route; nothing is sent).
        ("198.51.100.0/24", "198.51.100.0/24"),
        ("127.0.0.1/8", "is not a network"),  # host bits set
        ("10.0.0.0/31", "too small"),
        ("nonsense/8", "is not a network"),
    ],
)
def test_a_network_without_an_address_of_ours_is_a_config_error(host: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        listen_host(host, key="listen", source="gateway.yaml")
    assert str(caught.value).startswith("gateway.yaml: listen: ") and problem in str(caught.value)


def test_the_rendered_form_parses_and_binds_only_that_address() -> None:
    free = free_port()
    config = parse_config({"listen": f"127.0.0.0/8:{free}"}, "gateway.yaml")
    assert config.listen == ("127.0.0.0/8", free)

    async def bind() -> tuple[str, int]:
        runner = web.AppRunner(web.Application())
        await runner.setup()
        site = web.TCPSite(runner, listen_host(config.listen[0]), config.listen[1])
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        address = server.sockets[0].getsockname()  # type: ignore[attr-defined]
        port = int(address[1])
        # Bound to 127.0.0.1 only: 127.0.0.2 (also loopback) is refused.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        await runner.cleanup()
        return str(address[0]), port

    host, _ = asyncio.run(bind())
    assert host == "127.0.0.1"
