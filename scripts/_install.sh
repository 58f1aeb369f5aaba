# Sourced by the set-up scripts: create .venv once and install the engine into it.
# Usage: install_engine "."   or   install_engine ".[dev]"
install_engine() {
    if [ ! -x .venv/bin/python ]; then
        "${PYTHON:-python3}" -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e "$1"
}

# For the tests only (the demo needs no Redis): they start their own private redis-server,
# so only the binary is needed.
# Installs it with apt when running as root; otherwise says how to proceed.
ensure_redis_server() {
    # redis-cli (redis-tools, a dependency) creates the test cluster; openssl makes the TLS
    # test's certificates.
    command -v redis-server >/dev/null 2>&1 && command -v openssl >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "redis-server not found: install it, or set PERSONALIZE_SKIP_REDIS=1" \
            "to skip the Redis tests" >&2
        return 0
    fi
    # policy-rc.d answering 101 keeps the package from starting the system service on 6379.
    local policy=/usr/sbin/policy-rc.d created="" status=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
    fi
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            redis-server openssl >/dev/null; }; then
        status=1
    fi
    if [ -n "$created" ]; then rm -f "$policy"; fi
    return "$status"
}

# For tests/browser only: Debian's Chromium and its chromedriver (Selenium comes with the test
# extras and is given both paths, so nothing else is ever downloaded), and Node for the client's
# own tests. Installs what is missing with apt when running as root; otherwise (or if apt fails)
# says so, and those tests are skipped.
ensure_browser() {
    local missing=""
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    command -v chromedriver >/dev/null 2>&1 || missing="$missing chromium-driver"
    command -v node >/dev/null 2>&1 || missing="$missing nodejs"
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "not installed:$missing (Debian packages): the demo's browser tests are skipped" >&2
        return 0
    fi
    # shellcheck disable=SC2086 # one word per package
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            $missing >/dev/null; }; then
        echo "could not install$missing: the demo's browser tests are skipped" >&2
    fi
}
