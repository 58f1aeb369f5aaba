# Sourced by the set-up scripts: create .venv once and install the engine into it.
# Usage: install_engine "."   or   install_engine ".[dev]"
install_engine() {
    if [ ! -x .venv/bin/python ]; then
        "${PYTHON:-python3}" -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e "$1"
}
