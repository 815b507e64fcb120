#!/usr/bin/env bash
# One entry point for newcomers and CI:
#   ./dev.sh demo    install what is missing, then run Prosody + auth service + mucauth, and show
#                    an allowed and a refused join
#   ./dev.sh test    install what is missing, then lint, run a few seconds of the suite under
#                    trial, the whole suite under pytest (CI reads pytest's closing line), and
#                    build the docs
#   ./dev.sh test --fast
#                    Python dependencies only (no apt): every test that starts no Prosody,
#                    ejabberd or PostgreSQL, property tests with fewer examples
#   ./dev.sh docs    build the HTML docs into docs/_build/html (warnings are errors)
#   ./dev.sh bench   install what is missing, then run the join benchmark
set -euo pipefail
cd "$(dirname "$0")"

VENV=${MUCAUTH_VENV:-.venv}
APT_PACKAGES="prosody ejabberd postgresql python3-venv"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_system() {
    local missing=()
    for p in $APT_PACKAGES; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== installing ${missing[*]} (apt)"
        as_root apt-get update -qq
        # Another apt may hold the dpkg lock for a moment: retry a few times.
        for attempt in 1 2 3 4 5; do
            if as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; then
                break
            fi
            [ "$attempt" = 5 ] && { echo "apt-get install failed" >&2; exit 1; }
            sleep 5
        done
    fi
}

install_python() {
    local stamp="$VENV/.mucauth-installed"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating $VENV"
        python3 -m venv "$VENV"
    fi
    if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "== installing mucauth and its test tools into $VENV"
        # compat mode: a plain editable install hides twisted/plugins/ from twistd's plugin scan.
        # pip's chatter (setuptools warns about that mode) goes to a file, shown only on failure.
        if ! { "$VENV/bin/pip" install -q --upgrade pip &&
               "$VENV/bin/pip" install -q -e '.[test,docs]' --config-settings editable_mode=compat
             } >"$VENV/pip.log" 2>&1; then
            cat "$VENV/pip.log" >&2
            echo "installing into $VENV failed (log above, also in $VENV/pip.log)" >&2
            exit 1
        fi
        touch "$stamp"
    fi
}

cmd=${1:-}
shift || true
build_docs() {
    echo "== docs"
    # -W: warnings are errors; -n: every reference within the docs must resolve.
    "$VENV/bin/sphinx-build" -q -W -n --keep-going -b html docs docs/_build/html
}

case "$cmd" in
    setup)
        install_system; install_python ;;
    test)
        if [ "${1:-}" = "--fast" ]; then
            shift
            install_python
            echo "== pytest --fast (no server tests; ./dev.sh test runs them all)"
            exec "$VENV/bin/python" -m pytest --fast "$@"
        fi
        install_system; install_python
        echo "== ruff"
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        echo "== mypy"
        "$VENV/bin/mypy"
        # The suite also runs under trial (docs/contributing.rst); a few seconds of it show that
        # trial still collects and runs both kinds of test class, and its leftover check.
        echo "== trial (a subset)"
        "$VENV/bin/python" -m twisted.trial --reporter=text \
            tests.authorize tests.test_auth_service.RulesFileTests tests.test_zz_leftovers
        build_docs
        echo "== pytest"
        exec "$VENV/bin/python" -m pytest "$@" ;;
    docs)
        install_python; build_docs
        echo "docs/_build/html/index.html" ;;
    demo)
        install_system; install_python
        exec "$VENV/bin/python" examples/demo.py "$@" ;;
    bench)
        install_system; install_python
        exec "$VENV/bin/python" bench/joins.py "$@" ;;
    *)
        echo "usage: ./dev.sh demo | test [--fast] [pytest args] | docs | bench" >&2; exit 2 ;;
esac
