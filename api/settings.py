"""Deployment settings of the HTTP API, read from ``PERSONALIZE_*`` variables.

Built by :func:`api.main.create_app` (or the ``serve`` command), never at import time, so tests can
create many apps with different settings in one process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.candidates import PROBE_SHARE
from engine.profiles import StoreLimits
from engine.profiles.keys import CLUSTER_SHARDS, MAX_SHARDS

_ADDRESS = re.compile(r"[A-Za-z0-9.-]+:[0-9]{1,5}")
_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:[0-9]{1,5})?")


def _comma_separated(value: object) -> object:
    """``"a,b"`` -> ``["a", "b"]``: env values are plain text; JSON lists are still accepted."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class ApiSettings(BaseSettings):
    """How the API serves: where the model is, which store, who may write."""

    model_config = SettingsConfigDict(env_prefix="PERSONALIZE_", extra="ignore")

    models_dir: Path = Field(
        Path("models"), description="root of versioned model directories; serves its `current`"
    )
    redis_url: str | None = Field(
        None,
        description="Redis for profiles and events; unset: the embedded in-memory store "
        "(one process only: profiles are not shared between workers and vanish on restart)",
    )
    redis_cluster: bool = Field(
        False,
        description="the Redis URL names one node of a Redis Cluster; the client finds the rest",
    )
    redis_sentinels: Annotated[list[str], NoDecode, BeforeValidator(_comma_separated)] = Field(
        default_factory=list,
        description="Redis Sentinel addresses, host:port comma-separated; then the Redis URL's "
        "host is the master's name (redis[s]://[:password@]<master>[/db])",
    )
    redis_shards: int | None = Field(
        None,
        ge=1,
        le=MAX_SHARDS,
        description="hash tags the global keys (stream, trending, event ids) are spread over; "
        f"unset: 1, or {CLUSTER_SHARDS} with redis_cluster. Every process of a deployment must "
        "agree: changing it orphans the old shards' keys",
    )
    key_prefix: str = Field(
        "p13n:",
        pattern=r"^[A-Za-z0-9_.:|~=+-]{1,64}$",
        description="prefix of every Redis key (no braces: they would become the hash tag)",
    )
    api_keys: Annotated[list[SecretStr], NoDecode, BeforeValidator(_comma_separated)] = Field(
        default_factory=list,
        description="keys accepted in X-API-Key (comma-separated); writes and admin need one",
    )
    read_requires_key: bool = Field(False, description="reads need an API key too")
    consent_required: bool = Field(
        False,
        description="personalize only visitors who gave consent (PUT /v1/visitors/{id}/consent); "
        "unset: everyone but those who withdrew it",
    )
    recent_events: int = Field(
        StoreLimits.recent_events,
        ge=1,
        le=1000,
        description="newest events kept per visitor: the session the recommendations fold in",
    )
    max_batch: int = Field(1000, ge=1, le=100_000, description="most events in one request")
    max_body_bytes: int = Field(
        1 << 20, ge=1024, description="largest request body accepted (bytes)"
    )
    request_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="a request's head and body must arrive within this time of its first byte "
        "(slow clients get 408; `personalize serve` only)",
    )
    max_header_bytes: int = Field(
        16 * 1024,
        ge=1024,
        le=1 << 20,
        description="largest request line plus headers (larger: 431; `personalize serve` only)",
    )
    max_connections: int | None = Field(
        1024,
        ge=1,
        description="connections and requests in flight per worker before uvicorn answers 503 "
        "(its limit_concurrency); unset: no limit",
    )
    backlog: int = Field(
        2048, ge=1, description="connections the kernel queues before the server accepts them"
    )
    candidate_index: bool = Field(
        True,
        description="rank plain pages among candidates when the model has candidate lists (a "
        "large catalog's; approximate: overlap with exact pages in the benchmark report); off: "
        "every request ranks every item",
    )
    candidate_probe_share: float = Field(
        PROBE_SHARE,
        gt=0,
        le=1,
        description="share of the candidate lists probed per vector: more finds more of the exact "
        "top 10 and costs more (the README's Large catalogs has measured pairs)",
    )
    watch_seconds: float = Field(
        5.0, ge=0, description="poll interval of the models' `current` pointer; 0 disables"
    )
    demo: bool = Field(
        True,
        description="serve the demo storefront at /demo/ (turn off where shoppers could find it)",
    )
    cors_origins: Annotated[list[str], NoDecode, BeforeValidator(_comma_separated)] = Field(
        default_factory=list, description="origins allowed to call the API from a browser"
    )
    environment: Literal["development", "production"] = "development"

    @property
    def reads_need_key(self) -> bool:
        """Whether read routes check X-API-Key (only when keys are configured at all)."""
        return self.read_requires_key and bool(self.api_keys)

    @property
    def shards(self) -> int:
        """The global keys' shards this deployment uses."""
        if self.redis_shards is not None:
            return self.redis_shards
        return CLUSTER_SHARDS if self.redis_cluster else 1

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(host, int(port)) for host, _, port in (a.rpartition(":") for a in
                                                       self.redis_sentinels)]  # fmt: skip

    @model_validator(mode="after")
    def _refuse_open_writes_in_production(self) -> Self:
        # With no keys, every write (events, erasure, availability, model reload) is open to
        # anyone who can reach the port: fine on a laptop, never on the internet.
        if self.environment == "production" and not self.api_keys:
            raise ValueError(
                "PERSONALIZE_API_KEYS is empty: production needs at least one API key "
                "(writes and admin routes would be open to anyone)"
            )
        if self.redis_url is None and (self.redis_cluster or self.redis_sentinels):
            raise ValueError("redis_cluster and redis_sentinels need PERSONALIZE_REDIS_URL")
        if self.redis_cluster and self.redis_sentinels:
            raise ValueError("redis_cluster and redis_sentinels exclude each other")
        for address in self.redis_sentinels:
            if not _ADDRESS.fullmatch(address):
                raise ValueError(f"redis_sentinels: {address!r} is not host:port")
        if any(not key.get_secret_value() for key in self.api_keys):
            raise ValueError("api_keys: an API key must not be empty")
        for origin in self.cors_origins:
            # A browser's Origin is scheme://host[:port], exactly: "*" would let every site in,
            # and a path or trailing slash would silently match nothing.
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"cors_origins: {origin!r} is not an origin like https://shop.example "
                    "(scheme and host, optional port, no path, no wildcard)"
                )
        return self
