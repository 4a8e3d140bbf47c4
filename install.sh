#!/usr/bin/env bash
# claudegate installer: one line to start.
#
#   bash install.sh                          install, then open the setup wizard
#   bash install.sh --demo                   install, then `claudegate try` (no Anthropic key needed)
#   bash install.sh --config deploy.yaml     install, then deploy non-interactively
#   bash install.sh plan --config deploy.yaml   install, then run any claudegate command
#   bash install.sh --help                   this script's usage; changes nothing
#
# Safe to pipe to bash: nothing runs until the last line calls the function.
# Idempotent: a second run reuses the virtualenv and only upgrades claudegate.
#
# What it installs is pinned: piped to bash it installs exactly
# claudegate==CLAUDEGATE_PINNED_VERSION below, and when its sha256 is known
# (CLAUDEGATE_PINNED_SHA256, filled in for each release, or CLAUDEGATE_SHA256)
# pip checks the downloaded wheel against it (--require-hashes) before
# anything of it runs. claudegate is installed alone (--no-deps); its
# dependencies then come from the lock it ships (installer/requirements.lock:
# exact versions, every file's sha256), always hash-checked. A bare or ranged
# requirement (`claudegate`, `claudegate>=0.1`) is pinned or refused, never
# handed to pip as is.
#
# Environment:
#   CLAUDEGATE_HOME     where the virtualenv lives (default ~/.local/share/claudegate)
#   CLAUDEGATE_BIN      where the `claudegate` link goes (default ~/.local/bin)
#   CLAUDEGATE_SOURCE   what to install: a checkout directory, a wheel file, or
#                       `claudegate==X.Y.Z` (default: this script's directory when
#                       it sits in a checkout, else claudegate==CLAUDEGATE_VERSION)
#   CLAUDEGATE_SHA256   sha256 of the claudegate wheel to accept (default for
#                       claudegate==CLAUDEGATE_PINNED_VERSION: the release's, below;
#                       empty there: the version pin only)
#   CLAUDEGATE_WHEELS   a directory of wheels to install from, without an index
#   PYTHON              the Python 3.11+ interpreter to use (default python3)

# The release this script installs (kept equal to pyproject.toml's version by a test).
CLAUDEGATE_PINNED_VERSION="0.1.0"
# sha256 of that release's wheel, set when the release is published.
CLAUDEGATE_PINNED_SHA256=""

# What this run would install when CLAUDEGATE_SOURCE is not set: this script's checkout when it sits in
# one, else the pinned release. One function, so --help says exactly what the install does.
claudegate_default_source() {
    local here=""
    if [[ -n "${BASH_SOURCE[0]:-}" && -f "${BASH_SOURCE[0]}" ]]; then
        here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    fi
    if [[ -n "$here" && -f "$here/pyproject.toml" && -d "$here/installer/claudegate" ]]; then
        printf '%s\n' "$here"
    else
        printf 'claudegate==%s\n' "$CLAUDEGATE_PINNED_VERSION"
    fi
}

claudegate_usage() {
    local default now
    default="$(claudegate_default_source)"
    if [[ -n "${CLAUDEGATE_SOURCE:-}" ]]; then
        now="${CLAUDEGATE_SOURCE} (CLAUDEGATE_SOURCE)"
    elif [[ "$default" == claudegate==* ]]; then
        now="$default (the pinned release: this script is in no checkout)"
    else
        now="$default (the checkout this script is in)"
    fi
    cat <<USAGE
usage: bash install.sh [--demo | --config FILE | COMMAND [ARGS...] | --help]

Installs claudegate into a virtualenv (default ~/.local/share/claudegate/venv),
links ~/.local/bin/claudegate, then:
  (no arguments)        opens the setup wizard (claudegate init)
  --demo [ARGS]         claudegate try: the local stack in front of a demo echo
                        upstream, no Anthropic key needed (try --stop
                        removes it)
  --config FILE [ARGS]  claudegate deploy --config FILE: deploy without
                        questions
  COMMAND [ARGS]        any claudegate command, e.g. plan --config deploy.yaml
  --help, -h            this text; installs nothing, changes nothing

What it installs: CLAUDEGATE_SOURCE when set, else the checkout this script
sits in. Run now, it installs:
  $now
The dependencies come from the hash-pinned lock claudegate ships.

Environment:
  CLAUDEGATE_SOURCE   a checkout directory, a wheel file, or claudegate==X.Y.Z;
                      default: $default
  CLAUDEGATE_SHA256   sha256 of the wheel to accept (pip --require-hashes)
  CLAUDEGATE_WHEELS   a directory of wheels to install from, without an index
  CLAUDEGATE_HOME     where the virtualenv lives
                      (default ~/.local/share/claudegate)
  CLAUDEGATE_BIN      where the claudegate link goes (default ~/.local/bin)
  PYTHON              the Python 3.11+ interpreter (default python3)
USAGE
}

claudegate_install() {
    if [[ "${1:-}" == --help || "${1:-}" == -h ]]; then
        claudegate_usage
        return 0
    fi
    set -euo pipefail
    local home="${CLAUDEGATE_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/claudegate}"
    local bindir="${CLAUDEGATE_BIN:-$HOME/.local/bin}"
    local python="${PYTHON:-python3}"
    local source="${CLAUDEGATE_SOURCE:-}"
    local sha256="${CLAUDEGATE_SHA256:-}"

    say() { printf 'claudegate: %s\n' "$*" >&2; }
    die() { say "$1"; [[ -n "${2:-}" ]] && say "fix: $2"; exit 1; }

    if [[ -z "$source" ]]; then
        source="$(claudegate_default_source)"
    fi
    # A requirement must name one exact version; a bare name is the pinned one.
    if [[ "$source" == claudegate ]]; then
        source="claudegate==$CLAUDEGATE_PINNED_VERSION"
    fi
    local requirement=""
    if [[ -e "$source" ]]; then
        [[ -z "$sha256" || -f "$source" ]] \
            || die "CLAUDEGATE_SHA256 checks a wheel file, and $source is a directory" "unset CLAUDEGATE_SHA256 to install a checkout"
    elif [[ "$source" =~ ^claudegate==[0-9][0-9A-Za-z.+!-]*$ ]]; then
        requirement="$source"
        # The release this script names comes with its published hash.
        if [[ -z "$sha256" && "$source" == "claudegate==$CLAUDEGATE_PINNED_VERSION" ]]; then
            sha256="$CLAUDEGATE_PINNED_SHA256"
        fi
    else
        die "CLAUDEGATE_SOURCE=$source is not a pinned version" "set it to claudegate==$CLAUDEGATE_PINNED_VERSION, a wheel file or a checkout directory"
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
    say "installing claudegate from $source${sha256:+ (sha256 $sha256)}"
    # claudegate alone first (--no-deps): hash-checked when its sha256 is known.
    if [[ -n "$sha256" ]]; then
        [[ "$sha256" =~ ^[0-9a-f]{64}$ ]] || die "CLAUDEGATE_SHA256 is not 64 hex digits" "copy the sha256 from the release notes"
        local pinned="$home/pinned-requirements.txt"
        if [[ -n "$requirement" ]]; then
            printf '%s --hash=sha256:%s\n' "$requirement" "$sha256" >"$pinned"
        else
            printf 'claudegate @ file://%s --hash=sha256:%s\n' "$(cd "$(dirname "$source")" && pwd)/$(basename "$source")" "$sha256" >"$pinned"
        fi
        "${pip[@]}" --upgrade --no-deps --require-hashes -r "$pinned" \
            || die "pip refused claudegate (its sha256 is not $sha256, or it could not be fetched)" "check CLAUDEGATE_SHA256 against the release notes"
    else
        if [[ -n "$requirement" ]]; then
            # A bare version needs a package index that has it; say where else it can come from.
            "${pip[@]}" --upgrade --no-deps "$source" \
                || die "pip could not install $source from a package index" "run install.sh from a git checkout (git clone ...; bash claudegate/install.sh), or set CLAUDEGATE_SOURCE=/path/to/claudegate-X.Y.Z-py3-none-any.whl (a release file)"
        else
            "${pip[@]}" --upgrade --no-deps "$source" \
                || die "pip could not install claudegate from $source" "check the network or set CLAUDEGATE_WHEELS to a directory of wheels"
        fi
    fi
    # Then its dependencies, exactly as locked, every file hash-checked.
    local lock="$home/venv/share/claudegate/installer/requirements.lock"
    if [[ ! -f "$lock" && -n "${BASH_SOURCE[0]:-}" && -f "${BASH_SOURCE[0]}" ]]; then
        # An editable (development) install carries no data files: a checkout's
        # own lock, beside this very script, is the same one.
        local beside
        beside="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/installer/requirements.lock"
        [[ -f "$beside" ]] && lock="$beside"
    fi
    [[ -f "$lock" ]] || die "the installed claudegate carries no dependency lock ($lock)" "install a claudegate release (or checkout) that ships installer/requirements.lock"
    "${pip[@]}" --require-hashes -r "$lock" \
        || die "pip could not install claudegate's locked dependencies" "check the network or set CLAUDEGATE_WHEELS to a directory of wheels"

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
    elif [[ "$1" == --demo ]]; then
        exec "$bindir/claudegate" try "${@:2}"
    elif [[ "$1" == --config || "$1" == -c || "$1" == --config=* ]]; then
        exec "$bindir/claudegate" deploy "$@"
    else
        exec "$bindir/claudegate" "$@"
    fi
}

claudegate_install "$@"
