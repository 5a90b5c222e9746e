#!/usr/bin/env bash
# Idempotent set-up for a fresh Debian machine (Python 3.11): the venv with the locked
# dependencies; with --redis, Debian's redis-server for the Redis store's tests; with
# --browser, Debian's chromium and chromium-driver for the dashboard's browser test; with
# --prometheus, Debian's prometheus (and promtool) for the tests of deploy/prometheus; with
# --nginx, Debian's nginx (nginx-light where the release has it) for the load balancer's test
# (deploy/nginx).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
want_nginx=0
for arg in "$@"; do
    case "$arg" in
        --redis) command -v redis-server >/dev/null 2>&1 || packages+=(redis-server) ;;
        --browser)
            command -v chromium >/dev/null 2>&1 || packages+=(chromium)
            command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
            ;;
        --prometheus)
            command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
            ;;
        --nginx)
            # nginx lives in /usr/sbin, which a non-root PATH may not hold.
            command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || want_nginx=1
            ;;
        *) echo "setup: unknown option $arg (expected --redis, --browser, --prometheus, --nginx)" >&2; exit 2 ;;
    esac
done
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
updated=0
if (( want_nginx )); then
    $SUDO apt-get update -qq && updated=1
    # Debian 11 has the small nginx-light; 12 and later have one nginx package.
    if apt-cache show nginx-light >/dev/null 2>&1; then packages+=(nginx-light); else packages+=(nginx); fi
fi
if (( ${#packages[@]} )); then
    echo "setup: installing ${packages[*]} from Debian's packages" >&2
    (( updated )) || $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$PY" -m venv .venv
fi
# Reinstall only when the lock or the project metadata changed since the last install.
stamp=.venv/.switchboard-installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    # The distribution used to be called `switchboard` (a name the package index gives to
    # another project); a venv made then still holds it, with its own copy of the command.
    # Its build metadata in src/ goes first: pip would take it for the installed copy, and
    # uninstalling that one deletes the package it names, src/switchboard itself.
    rm -rf src/switchboard.egg-info
    if compgen -G ".venv/lib/python3*/site-packages/switchboard-*.dist-info" >/dev/null; then
        .venv/bin/python -m pip uninstall -q -y switchboard
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
    echo "$want" > "$stamp"
fi
