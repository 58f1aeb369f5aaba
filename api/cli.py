"""``personalize serve``: run the API under uvicorn.

Settings travel to the app as ``PERSONALIZE_*`` environment variables, not as Python objects: with
``--workers N`` uvicorn starts N fresh processes that each call :func:`api.main.app_factory`, and
the environment is what they all inherit, so every worker serves the same configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from api.server import PROTOCOL
from api.settings import ApiSettings
from engine.artifacts import current_version

APP_FACTORY = "api.main:app_factory"

# One BLAS/OpenMP thread per worker: set before uvicorn starts (and spawns) the workers, so
# numpy's thread pools never start wider. app_factory also calls threadpoolctl for the
# single-process case, where numpy may already be loaded by then.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Longer than the idle timeout of common load balancers (60 s): if the server closed idle
# keep-alive connections first, the balancer could send a request down a closing socket (502).
KEEP_ALIVE_SECONDS = 65

# No "trace": at that level uvicorn logs every ASGI message, request headers (API keys) included.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")

# prometheus_client's multiprocess switch (api/metrics.py). Named here rather than imported:
# the variable must be set before any process imports prometheus_client.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True)
class ServePlan:
    """Everything ``serve`` does, computed without side effects (so it can be tested)."""

    environ: dict[str, str]  # variables to set before uvicorn starts
    uvicorn: dict[str, Any] = field(default_factory=dict)  # keyword arguments of uvicorn.run
    warnings: tuple[str, ...] = ()


def plan(
    *,
    models_dir: Path | None = None,
    redis_url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    api_keys: Sequence[str] = (),
    environment: str | None = None,
    read_requires_key: bool | None = None,
    key_prefix: str | None = None,
    cors_origins: Sequence[str] = (),
    watch_seconds: float | None = None,
    request_timeout: float | None = None,
    max_connections: int | None = None,
    access_log: bool = False,
    log_level: str = "info",
    environ: Mapping[str, str] | None = None,
) -> ServePlan:
    """Validate the configuration (as the workers will read it) and say how to start uvicorn.

    Raises:
        ValueError: a bad flag or setting, with a one-line message.
    """
    base = dict(os.environ if environ is None else environ)
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if not 0 < port < 65536:
        raise ValueError("--port must be between 1 and 65535")
    if any("," in key for key in api_keys):
        raise ValueError("an API key must not contain ',' (keys are passed comma-separated)")
    given: dict[str, str] = {}
    if models_dir is not None:
        given["PERSONALIZE_MODELS_DIR"] = str(models_dir.resolve())
    if redis_url is not None:
        given["PERSONALIZE_REDIS_URL"] = redis_url
    if api_keys:
        given["PERSONALIZE_API_KEYS"] = ",".join(api_keys)
    if environment is not None:
        given["PERSONALIZE_ENVIRONMENT"] = environment
    if read_requires_key is not None:
        given["PERSONALIZE_READ_REQUIRES_KEY"] = "true" if read_requires_key else "false"
    if key_prefix is not None:
        given["PERSONALIZE_KEY_PREFIX"] = key_prefix
    if cors_origins:
        given["PERSONALIZE_CORS_ORIGINS"] = ",".join(cors_origins)
    if watch_seconds is not None:
        given["PERSONALIZE_WATCH_SECONDS"] = repr(float(watch_seconds))
    if request_timeout is not None:
        given["PERSONALIZE_REQUEST_TIMEOUT_SECONDS"] = repr(float(request_timeout))
    if max_connections is not None:
        given["PERSONALIZE_MAX_CONNECTIONS"] = str(max_connections)
    if log_level not in LOG_LEVELS:
        raise ValueError(f"--log-level must be one of {', '.join(LOG_LEVELS)}")
    for name in THREAD_VARIABLES:
        if name not in base:
            given[name] = "1"
    settings = _settings({**base, **given})
    metrics_dir = base.get(METRICS_DIR_VARIABLE)
    if workers > 1 and metrics_dir is not None and not Path(metrics_dir).is_dir():
        raise ValueError(f"{METRICS_DIR_VARIABLE}={metrics_dir} is not a directory")
    warnings = []
    if current_version(settings.models_dir) is None:
        warnings.append(
            f"no model published in {settings.models_dir} yet: the API stays unready "
            "(GET /readyz 503) until one is (it watches the directory)"
        )
    if settings.redis_url is None and workers > 1:
        warnings.append(
            "the embedded profile store lives in each worker: with --workers > 1 a visitor's "
            "events and recommendations may land in different workers; use --redis-url"
        )
    return ServePlan(
        environ=given,
        uvicorn={
            "factory": True,
            "host": host,
            "port": port,
            "workers": workers,
            "timeout_keep_alive": KEEP_ALIVE_SECONDS,
            # Bounds on what one client can hold (api/server.py): a deadline for every request
            # (request_timeout_seconds), a bounded request head, connections per worker.
            "http": PROTOCOL,
            "h11_max_incomplete_event_size": settings.max_header_bytes,
            "limit_concurrency": settings.max_connections,
            "backlog": settings.backlog,
            "access_log": access_log,
            "log_level": log_level,
            "lifespan": "on",  # a lifespan that fails must stop the server, not be ignored
        },
        warnings=tuple(warnings),
    )


class _FromMappingOnly(ApiSettings):
    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _settings(environ: Mapping[str, str]) -> ApiSettings:
    """The settings a worker will build from ``environ``, checked now for a one-line error."""
    prefix = "PERSONALIZE_"
    given = {
        name: value
        for key, value in environ.items()
        if key.upper().startswith(prefix)
        and (name := key[len(prefix) :].lower()) in ApiSettings.model_fields
    }
    try:
        # Only ``given``, never this process's os.environ: exactly what a worker whose whole
        # environment is ``environ`` will see.
        return _FromMappingOnly.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"invalid server settings: {problems}") from None


def run(
    serve_plan: ServePlan,
    *,
    environ: MutableMapping[str, str] | None = None,
    runner: Callable[..., None] | None = None,
) -> int:
    """Apply the plan: set the environment, then run uvicorn (blocks until it stops)."""
    target = os.environ if environ is None else environ
    for message in serve_plan.warnings:
        print(f"personalize: warning: {message}", file=sys.stderr)
    target.update(serve_plan.environ)
    if runner is None:
        import uvicorn

        runner = uvicorn.run
    with _shared_metrics(target, serve_plan.uvicorn["workers"]):
        runner(APP_FACTORY, **serve_plan.uvicorn)
    return 0


@contextlib.contextmanager
def _shared_metrics(environ: MutableMapping[str, str], workers: int) -> Iterator[None]:
    """With several workers, a directory where each one writes its metrics, so that /metrics
    in any of them reports all (prometheus_client's multiprocess mode, api/metrics.py).

    A private temporary directory unless ``PROMETHEUS_MULTIPROC_DIR`` names one (then its
    ``*.db`` files, left by an earlier run, are removed first: they would be summed in). One
    worker runs inside this process and keeps its metrics in memory.
    """
    if workers == 1:
        yield
        return
    given = environ.get(METRICS_DIR_VARIABLE)
    if given is not None:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    with tempfile.TemporaryDirectory(prefix="personalize-metrics-") as folder:
        environ[METRICS_DIR_VARIABLE] = folder
        try:
            yield
        finally:
            del environ[METRICS_DIR_VARIABLE]


def serve(
    *,
    models_dir: Path | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    redis_url: str | None = None,
    workers: int = 1,
    api_keys: Sequence[str] = (),
    **options: Any,
) -> int:
    """Serve the API (blocks); the same as ``personalize serve`` with these flags."""
    return run(
        plan(
            models_dir=models_dir,
            host=host,
            port=port,
            redis_url=redis_url,
            workers=workers,
            api_keys=api_keys,
            **options,
        )
    )


def plan_from_args(args: argparse.Namespace) -> ServePlan:
    return plan(
        models_dir=args.models_dir,
        redis_url=args.redis_url,
        host=args.host,
        port=args.port,
        workers=args.workers,
        api_keys=args.api_keys or (),
        environment=args.environment,
        read_requires_key=args.read_requires_key,
        key_prefix=args.key_prefix,
        cors_origins=args.cors_origins or (),
        watch_seconds=args.watch_seconds,
        request_timeout=args.request_timeout,
        max_connections=args.max_connections,
        access_log=args.access_log,
        log_level=args.log_level,
    )


def _serve_command(args: argparse.Namespace) -> int:
    return run(plan_from_args(args))


def register(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Add ``serve`` to the ``personalize`` parser; its handler takes the parsed args."""
    serve_parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="serve recommendations and event ingestion over HTTP",
        description="Run the HTTP API under uvicorn. Flags override PERSONALIZE_* variables; "
        "prefer PERSONALIZE_API_KEYS to --api-key (command lines are visible to other users).",
    )
    add = serve_parser.add_argument
    add(
        "--models",
        dest="models_dir",
        type=Path,
        help="models directory; serves its `current` (env PERSONALIZE_MODELS_DIR; ./models)",
    )
    add(
        "--redis-url",
        help="Redis for profiles (env PERSONALIZE_REDIS_URL); "
        "default: the embedded in-memory store",
    )
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--port", type=int, default=8000, help="port (default 8000)")
    add("--workers", type=int, default=1, help="worker processes (default 1)")
    add(
        "--api-key",
        dest="api_keys",
        action="append",
        metavar="KEY",
        help="accepted X-API-Key (repeatable; env PERSONALIZE_API_KEYS, comma-separated)",
    )
    add(
        "--environment",
        choices=["development", "production"],
        help="production refuses to start without API keys (env PERSONALIZE_ENVIRONMENT)",
    )
    add(
        "--read-requires-key",
        action="store_true",
        default=None,
        help="reads need an API key too (env PERSONALIZE_READ_REQUIRES_KEY)",
    )
    add("--key-prefix", help="prefix of every Redis key (env PERSONALIZE_KEY_PREFIX; p13n:)")
    add(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        metavar="ORIGIN",
        help="browser origin allowed to call the API (repeatable)",
    )
    add(
        "--watch-seconds",
        type=float,
        help="poll interval of the models' `current` pointer; 0 disables (default 5)",
    )
    add(
        "--request-timeout",
        type=float,
        metavar="SECONDS",
        help="a request must arrive within this time of its first byte, else 408 "
        "(env PERSONALIZE_REQUEST_TIMEOUT_SECONDS; 10)",
    )
    add(
        "--max-connections",
        type=int,
        metavar="N",
        help="connections and requests in flight per worker before 503 "
        "(env PERSONALIZE_MAX_CONNECTIONS; 1024)",
    )
    add("--access-log", action="store_true", help="log every request (off: metrics count them)")
    add("--log-level", choices=LOG_LEVELS, default="info", help="uvicorn's log level (info)")
    serve_parser.set_defaults(handler=_serve_command)
    return serve_parser  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m api.cli serve ...`` without the trainer's commands."""
    parser = argparse.ArgumentParser(prog="personalize-api")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ValueError as exc:
        print(f"personalize: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
