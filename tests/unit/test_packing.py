"""The C packer sends byte for byte what redis-py's own Python packer sends."""

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from engine.profiles.packing import HiredisPackingConnection

COMMANDS = [
    ("SET", "p13n:{g}:seen:e1", "1", "NX", "EX", 86400),
    ("EVALSHA", "a" * 40, 2, "k1", "k2", "é ünïcode", 1.5, b"\x00bytes", memoryview(b"view")),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", "personalize"),
    ("LRANGE", "p13n:{v:v1}:recent", 0, -1),
]


@pytest.mark.parametrize("command", COMMANDS)
def test_one_command_packs_like_redis_py(command: tuple[object, ...]) -> None:
    expected = b"".join(bytes(chunk) for chunk in Connection().pack_command(*command))
    assert HiredisPackingConnection().pack_command(*command) == [expected]


def test_a_pipeline_packs_like_redis_py() -> None:
    expected = b"".join(bytes(chunk) for chunk in Connection().pack_commands(COMMANDS))
    assert HiredisPackingConnection().pack_commands(COMMANDS) == [expected]


def test_an_unencodable_argument_is_a_data_error() -> None:
    with pytest.raises(DataError):
        HiredisPackingConnection().pack_command("SET", "k", object())
