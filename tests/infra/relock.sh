#!/usr/bin/env bash
# Regenerate the dependency locks so that they agree with each other.
#
#   assets/gateway/requirements.lock  the gateway image's (uv, universal, as its header says)
#   installer/requirements.lock       what install.sh gives users: pyproject.toml's dependencies
#   requirements-test.lock            the CI/test venv (.ci/run): pyproject's dependencies and
#                                     extras [test,acme], the gateway's dependencies and
#                                     tests/infra/requirements-test-extra.in
#
# A package in more than one lock gets the same pin in each: the gateway lock
# is made first, the installer lock is constrained by its pins, and the test
# lock by both. So CI tests exactly the versions users and the image get
# (tests/install/test_locks.py checks it).
#
# Run it after changing any dependency (a pyproject.toml or the extra .in file),
# from anywhere in the checkout:
#   bash tests/infra/relock.sh                      # keep every existing pin that still fits
#   bash tests/infra/relock.sh --upgrade            # move everything to the newest versions
#   bash tests/infra/relock.sh --upgrade-package X  # only X (repeatable)
# then commit the three lock files. Needs PyPI; the tools it uses (pip-tools,
# uv, pinned below) go into .venv-tools/relock.
set -euo pipefail
cd "$(dirname "$0")/../.."

PIP_TOOLS_VERSION=7.7.0
UV_VERSION=0.13.9

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

main() {
    local upgrade=()
    while (($#)); do
        case "$1" in
            --upgrade) upgrade+=(--upgrade) ;;
            --upgrade-package) upgrade+=(--upgrade-package "$2"); shift ;;
            -h|--help) usage; return 0 ;;
            *) echo "relock: unknown argument $1" >&2; usage >&2; return 2 ;;
        esac
        shift
    done

    local tools=.venv-tools/relock
    if [[ ! -x "$tools/bin/pip-compile" || ! -x "$tools/bin/uv" ]] \
        || ! "$tools/bin/pip-compile" --version | grep -q "$PIP_TOOLS_VERSION"; then
        python3 -m venv "$tools"
        "$tools/bin/pip" install -q "pip-tools==$PIP_TOOLS_VERSION" "uv==$UV_VERSION"
    fi

    # (global: the EXIT trap runs after main returns)
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    # The machine's own pip settings (local indexes, find-links, constraints)
    # must not leak into files other machines install from.
    export PIP_CONFIG_FILE=/dev/null
    unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT
    local common=(--generate-hashes --allow-unsafe --strip-extras --no-header
                  --no-emit-index-url --no-emit-find-links --no-emit-trusted-host --quiet)

    echo "relock: assets/gateway/requirements.lock" >&2
    # uv reads the existing file as its preferences: unchanged pins stay.
    (cd assets/gateway && "../../$tools/bin/uv" pip compile --quiet --generate-hashes --python-version 3.11 \
        --universal "${upgrade[@]}" pyproject.toml -o requirements.lock)
    pins assets/gateway/requirements.lock >"$work/gateway-pins.txt"

    echo "relock: installer/requirements.lock" >&2
    cp installer/requirements.lock "$work/installer.lock"
    (cd "$work" && "$OLDPWD/$tools/bin/pip-compile" "${common[@]}" "${upgrade[@]}" \
        -c gateway-pins.txt --output-file installer.lock "$OLDPWD/pyproject.toml")
    {
        cat <<'EOF'
# The operator side's dependencies, pinned with every published file's sha256.
# install.sh installs them with pip --require-hashes after claudegate itself
# (claudegate is installed --no-deps). Made by tests/infra/relock.sh (run it
# after changing pyproject's dependencies; a test checks every one is here),
# with the same pins as requirements-test.lock, which CI installs.
EOF
        relative "$work/installer.lock"
    } >installer/requirements.lock
    pins installer/requirements.lock >"$work/installer-pins.txt"

    echo "relock: requirements-test.lock" >&2
    [[ -f requirements-test.lock ]] && cp requirements-test.lock "$work/test.lock"
    cp tests/infra/requirements-test-extra.in "$work/requirements-test-extra.in"
    (cd "$work" && "$OLDPWD/$tools/bin/pip-compile" "${common[@]}" "${upgrade[@]}" \
        --extra test --extra acme -c gateway-pins.txt -c installer-pins.txt --output-file test.lock \
        "$OLDPWD/pyproject.toml" "$OLDPWD/assets/gateway/pyproject.toml" requirements-test-extra.in)
    {
        cat <<'EOF'
# The test venv's packages, pinned with every published file's sha256 (CPython
# 3.11 on Linux, what CI runs). .ci/run installs it with pip --require-hashes,
# then the two projects with --no-deps. Made by tests/infra/relock.sh from
# pyproject.toml [test,acme], assets/gateway/pyproject.toml and
# tests/infra/requirements-test-extra.in, with the same pins as
# installer/requirements.lock and assets/gateway/requirements.lock.
EOF
        relative "$work/test.lock"
    } >requirements-test.lock
    echo "relock: done; commit assets/gateway/requirements.lock installer/requirements.lock requirements-test.lock" >&2
}

# pins LOCK: its name==version lines, without hashes or markers (a marker of one lock must
# not restrict another), as a constraints file.
pins() { grep -E '^[A-Za-z0-9]' "$1" | sed 's/ *[;\\].*$//'; }

# relative FILE: print it with the checkout's absolute path made relative
# (pip-compile names its sources in "# via" comments).
relative() { sed "s#$PWD/##g" "$1"; }

main "$@"
