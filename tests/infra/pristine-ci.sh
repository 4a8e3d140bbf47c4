#!/usr/bin/env bash
# Run .ci/run the way a machine that has never seen the project runs it.
#
# Usage: tests/infra/pristine-ci.sh [options] [REF]
#
#   REF            what to test: a commit, branch or tag of the repository
#                  (default HEAD). Only committed work is tested: the run is on
#                  a clean `git clone`, never on a working tree.
#
# Mode (the only one offered): from nothing, on this machine.
#   1. Every Docker object of claudegate's and of its tests is removed:
#      containers, networks and volumes labelled org.claudegate.test (the
#      tests' fresh servers) or org.claudegate.instance (deployed stacks), and
#      images named claudegate/* or claudegate-test/* or labelled
#      org.claudegate.context (built by deploys). Nothing else is touched.
#   2. Their cache directories are removed: /var/cache/claudegate-test (the
#      debootstrap rootfs, wheel caches), $CLAUDEGATE_WHEELHOUSE_CACHE.
#   3. The ref is cloned into a new directory and .ci/run runs there with a
#      new, empty HOME (no ~/.cache, ~/.npm, ~/.ssh, ~/.config), no pip cache
#      (PIP_NO_CACHE_DIR), no pip or npm configuration of this machine, and
#      no CLAUDEGATE_* variables: only PATH, TERM, locale, proxy and CA
#      settings pass through, and CI_PYTEST_WORKERS when set (.ci/run's
#      worker count, for comparing counts on one machine).
#   What stays: the system packages (.ci/run installs the ones missing) and
#   the running Docker engine (pass --stop-dockerd to stop it first, so
#   tests/infra/start-services.sh starts it as on a new machine).
#
# Why not inside a pristine Debian container: the fresh-server flags
# (DESIGN.md: --cap-add=ALL --cap-drop=SYS_RESOURCE, seccomp and apparmor
# unconfined, /sys/fs/cgroup bind-mounted rw) do give a container its own
# Docker engine, but on this kind of machine containers reach Debian's mirror
# and not PyPI or the npm registry (TLS to them fails inside containers), so
# .ci/run cannot install the test venv or the Node clients there; and the
# end-to-end tests would nest three engines deep (CI container -> fresh server
# -> the gateway's containers). On a machine whose containers do reach PyPI,
# the same steps run in one: clone into a directory, then
#   docker run --rm --cap-add=ALL --cap-drop=SYS_RESOURCE \
#     --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
#     -v /sys/fs/cgroup:/sys/fs/cgroup:rw -v <docker-volume>:/var/lib/docker \
#     -v <clone>:/src -w /src claudegate/debian-base:bookworm \
#     sh -c 'apt-get update && apt-get install -y python3-venv git && .ci/run'
#
# Options:
#   --repo PATH|URL   the repository to clone (default: the one holding this script)
#   --dir DIR         where to clone and keep logs (default: a new /tmp/claudegate-pristine.*)
#   --stop-dockerd    stop the Docker engine that tests/infra/start-services.sh
#                     started (its pid file), so .ci/run starts it
#   --no-clean        keep claudegate's Docker objects and caches (a quicker,
#                     less pristine run)
#   --clean-only      remove them (step 1 and 2), then stop: no clone, no run
#   -h, --help        this text
#
# Other work on this machine that uses Docker must not run meanwhile (step 1
# removes the images it may be using): run it under the shared lock, e.g.
#   flock /work/docker-e2e.lock tests/infra/pristine-ci.sh h/ci
#
# Exit status: .ci/run's (non-zero on any failed lint or test), or 2 on bad usage.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
say() { printf 'pristine-ci: %s\n' "$*" >&2; }

main() {
    local repo="" dir="" ref=HEAD stop_dockerd=0 clean=1 run=1
    while (($#)); do
        case "$1" in
            --repo) repo="$2"; shift ;;
            --dir) dir="$2"; shift ;;
            --stop-dockerd) stop_dockerd=1 ;;
            --no-clean) clean=0 ;;
            --clean-only) run=0 ;;
            -h|--help) usage; return 0 ;;
            -*) say "unknown option $1"; usage >&2; return 2 ;;
            *) ref="$1" ;;
        esac
        shift
    done
    [[ -n "$repo" ]] || repo="$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
    [[ -n "$dir" ]] || dir="$(mktemp -d /tmp/claudegate-pristine.XXXXXX)"
    mkdir -p "$dir"

    local commit=""
    if [[ -d "$repo" ]]; then
        commit="$(git -C "$repo" rev-parse --verify "$ref^{commit}")"
    fi

    if ((clean)); then
        remove_docker_objects
        remove_caches
    fi
    if ((stop_dockerd)); then stop_engine; fi
    if ((!run)); then say "cleaned; not running (--clean-only)"; return 0; fi

    say "cloning $repo at $ref into $dir/src"
    rm -rf "$dir/src" "$dir/home"
    git clone --quiet --no-local "$repo" "$dir/src"
    if [[ ! -d "$repo" ]]; then  # a URL: a commit or tag, or a branch of the remote
        commit="$(git -C "$dir/src" rev-parse --verify -q "$ref^{commit}" \
            || git -C "$dir/src" rev-parse --verify "origin/$ref^{commit}")"
    fi
    git -C "$dir/src" -c advice.detachedHead=false checkout --quiet --detach "$commit"
    say "testing $(git -C "$dir/src" log -1 --format='%h %s')"

    mkdir -p "$dir/home"
    local env=(
        "HOME=$dir/home" "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        "TERM=${TERM:-xterm}" "LANG=${LANG:-C.UTF-8}" "PIP_NO_CACHE_DIR=1" "PIP_CONFIG_FILE=/dev/null"
        "PIP_DISABLE_PIP_VERSION_CHECK=1"
    )
    # The one knob of .ci/run's own, for comparing worker counts on one machine.
    [[ -z "${CI_PYTEST_WORKERS:-}" ]] || env+=("CI_PYTEST_WORKERS=$CI_PYTEST_WORKERS")
    # The machine's network plumbing is not a cache: proxies and CA bundles pass.
    local name
    for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
        SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE NODE_EXTRA_CA_CERTS PIP_CERT; do
        [[ -n "${!name:-}" ]] && env+=("$name=${!name}")
    done
    # A python3 of this machine that is not Debian's (e.g. /root/.pyenv) stays out:
    # a fresh Debian machine has /usr/bin/python3.
    say "running .ci/run (log: $dir/ci.log)"
    local started=$SECONDS rc=0
    (cd "$dir/src" && env -i "${env[@]}" bash .ci/run) 2>&1 | tee "$dir/ci.log" || rc=${PIPESTATUS[0]}
    say "exit $rc after $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s; log: $dir/ci.log"
    return "$rc"
}

remove_docker_objects() {
    command -v docker >/dev/null && docker info >/dev/null 2>&1 || { say "no Docker engine answers: nothing to remove"; return 0; }
    local label ids
    for label in org.claudegate.test org.claudegate.instance; do
        ids="$(docker ps -aq --filter "label=$label")"
        [[ -z "$ids" ]] || { say "removing containers labelled $label"; docker rm -f -v $ids >/dev/null; }
    done
    for label in org.claudegate.test org.claudegate.instance; do
        ids="$(docker network ls -q --filter "label=$label")"
        [[ -z "$ids" ]] || { say "removing networks labelled $label"; docker network rm $ids >/dev/null || true; }
        ids="$(docker volume ls -q --filter "label=$label")"
        [[ -z "$ids" ]] || { say "removing volumes labelled $label"; docker volume rm -f $ids >/dev/null || true; }
    done
    # One at a time, repeated: an image another one was built FROM (the base image)
    # cannot go while its child is there, so it goes on a later pass.
    local pass id
    for ((pass = 1; pass <= 5; pass++)); do
        ids="$(claudegate_images)"
        [[ -n "$ids" ]] || break
        say "removing claudegate images (pass $pass): $(wc -w <<<"$ids")"
        for id in $ids; do docker rmi -f "$id" >/dev/null 2>&1 || true; done
    done
    # An image that still has a child (an untagged build intermediate made FROM
    # it) cannot be deleted by ID; taking its names away is enough here: nothing
    # claudegate's can find it any more, so the run builds it again.
    local ref
    for ref in $(docker images --format '{{.Repository}}:{{.Tag}}' --filter 'reference=claudegate/*' \
                     --filter 'reference=claudegate-test/*'); do
        docker rmi "$ref" >/dev/null 2>&1 && say "untagged $ref (an untagged image was built from it)"
    done
    ids="$(claudegate_images)"
    if [[ -n "$ids" ]]; then
        say "could not remove these images (a container that is not claudegate's may use them):"
        docker images --filter 'reference=claudegate/*' --filter 'reference=claudegate-test/*' >&2
        return 1
    fi
    # The engine's build cache is shared with other work, so it stays; it cannot
    # serve these builds anyway: they all start from the base image, which is
    # made again from a new debootstrap (its cache is removed below), so a new ID.
}

# claudegate_images: the IDs of the images claudegate and its tests made, one per line.
claudegate_images() {
    { docker images -q --filter 'reference=claudegate/*' --filter 'reference=claudegate/*:*'
      docker images -q --filter 'reference=claudegate-test/*' --filter 'reference=claudegate-test/*:*'
      docker images -q --filter 'label=org.claudegate.context'; } | sort -u
}

remove_caches() {
    local cache
    for cache in /var/cache/claudegate-test "${CLAUDEGATE_TEST_CACHE:-}" "${CLAUDEGATE_WHEELHOUSE_CACHE:-}"; do
        [[ -n "$cache" && -e "$cache" ]] || continue
        say "removing $cache"
        rm -rf "$cache"
    done
}

stop_engine() {
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || { say "no dockerd pid file: not stopping anything"; return 0; }
    say "stopping dockerd (pid $pid)"
    kill "$pid"
    local i
    for ((i = 0; i < 120; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    say "dockerd (pid $pid) did not stop within 60 s"
    return 1
}

main "$@"
