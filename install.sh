#!/usr/bin/env bash
# claudegate installer: one line to start.
#
#   bash install.sh                          install, then open the setup wizard
#   bash install.sh --config deploy.yaml     install, then deploy non-interactively
#   bash install.sh plan --config deploy.yaml   install, then run any claudegate command
#
# Safe to pipe to bash: nothing runs until the last line calls the function.
# Idempotent: a second run reuses the virtualenv and only upgrades claudegate.
#
# Environment:
#   CLAUDEGATE_HOME     where the virtualenv lives (default ~/.local/share/claudegate)
#   CLAUDEGATE_BIN      where the `claudegate` link goes (default ~/.local/bin)
#   CLAUDEGATE_SOURCE   what to install: a checkout directory, a wheel, or a pip
#                       requirement (default: this script's directory when it sits
#                       in a checkout, else the `claudegate` package)
#   CLAUDEGATE_WHEELS   a directory of wheels to install from, without an index
#   PYTHON              the Python 3.11+ interpreter to use (default python3)

claudegate_install() {
    set -euo pipefail
    local home="${CLAUDEGATE_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/claudegate}"
    local bindir="${CLAUDEGATE_BIN:-$HOME/.local/bin}"
    local python="${PYTHON:-python3}"
    local source="${CLAUDEGATE_SOURCE:-}"

    say() { printf 'claudegate: %s\n' "$*" >&2; }
    die() { say "$1"; [[ -n "${2:-}" ]] && say "fix: $2"; exit 1; }

    if [[ -z "$source" ]]; then
        local here=""
        if [[ -n "${BASH_SOURCE[0]:-}" && -f "${BASH_SOURCE[0]}" ]]; then
            here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
        fi
        if [[ -n "$here" && -f "$here/pyproject.toml" && -d "$here/installer/claudegate" ]]; then
            source="$here"
        else
            source="claudegate"
        fi
    fi

    command -v "$python" >/dev/null 2>&1 \
        || die "no $python on PATH" "install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3 python3-venv)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$("$python" -V 2>&1) is too old; claudegate needs 3.11+" "install a newer Python and set PYTHON=/path/to/python3.11"
    "$python" -c 'import venv, ensurepip' >/dev/null 2>&1 \
        || die "$python cannot make virtualenvs" "apt-get install python3-venv (or your system's equivalent)"

    if [[ ! -x "$home/venv/bin/python" ]]; then
        say "creating a virtualenv in $home/venv"
        mkdir -p "$home"
        "$python" -m venv "$home/venv"
    fi

    local pip=("$home/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
    if [[ -n "${CLAUDEGATE_WHEELS:-}" ]]; then
        pip+=(--no-index --find-links "$CLAUDEGATE_WHEELS")
    fi
    say "installing claudegate from $source"
    "${pip[@]}" --upgrade "$source" \
        || die "pip could not install claudegate" "check the network or set CLAUDEGATE_WHEELS to a directory of wheels"

    mkdir -p "$bindir"
    ln -sfn "$home/venv/bin/claudegate" "$bindir/claudegate"
    case ":$PATH:" in
        *":$bindir:"*) ;;
        *) say "add $bindir to your PATH to run claudegate directly: export PATH=\"$bindir:\$PATH\"" ;;
    esac
    say "installed: $("$bindir/claudegate" --version)"

    if [[ $# -eq 0 ]]; then
        # Piped in (curl ... | bash), stdin is the script: the wizard reads the terminal instead.
        if [[ ! -t 0 ]] && { : </dev/tty; } 2>/dev/null; then
            exec </dev/tty
        fi
        exec "$bindir/claudegate" init
    elif [[ "$1" == --config || "$1" == -c || "$1" == --config=* ]]; then
        exec "$bindir/claudegate" deploy "$@"
    else
        exec "$bindir/claudegate" "$@"
    fi
}

claudegate_install "$@"
