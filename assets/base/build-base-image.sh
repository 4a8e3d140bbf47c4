#!/usr/bin/env bash
# Build a Debian base image without a registry (the tests use it for every
# image; `claudegate try` and a deploy offer it when a pull fails).
#
# No image registry is reachable, so `FROM debian` cannot work: the rootfs is
# made with debootstrap (minbase + ca-certificates, Debian mirror configured)
# and imported with `docker import`. Idempotent and quick on re-run:
#   - the image tag exists           -> nothing to do
#   - the rootfs tarball is cached   -> only `docker import` (a few seconds)
#   - otherwise                      -> debootstrap (~1-2 min), cache, import
#
# Environment:
#   CLAUDEGATE_BASE_IMAGE   tag to produce (default claudegate/debian-base:bookworm)
#   CLAUDEGATE_TEST_CACHE   cache dir (default /var/cache/claudegate-test)
#   DEBIAN_MIRROR           mirror URL (default http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR  (default http://deb.debian.org/debian-security)
#   FORCE=1                 rebuild the rootfs and re-import even if present
set -euo pipefail

# Bump when the recipe below changes, so an old cached tarball is not reused.
RECIPE_VERSION=1

main() {
    local tag="${CLAUDEGATE_BASE_IMAGE:-claudegate/debian-base:bookworm}"
    local cache="${CLAUDEGATE_TEST_CACHE:-/var/cache/claudegate-test}"
    local mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
    local sec_mirror="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
    local suite=bookworm
    local arch
    arch="$(dpkg --print-architecture)"
    local tarball="$cache/debian-$suite-$arch-minbase-r$RECIPE_VERSION.tar"

    if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$tag" >/dev/null 2>&1; then
        echo "build-base-image: $tag already exists"
        return 0
    fi

    mkdir -p "$cache"
    exec 9>"$cache/build-base-image.lock"
    flock -w 900 9

    if [[ "${FORCE:-0}" == 1 || ! -s "$tarball" ]]; then
        make_rootfs_tarball "$suite" "$mirror" "$sec_mirror" "$cache" "$tarball"
    else
        echo "build-base-image: using cached $tarball"
    fi

    echo "build-base-image: importing as $tag"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase $suite (claudegate test base, recipe $RECIPE_VERSION)" \
        "$tarball" "$tag" >/dev/null
    echo "build-base-image: done: $tag"
}

make_rootfs_tarball() {
    local suite="$1" mirror="$2" sec_mirror="$3" cache="$4" tarball="$5"
    local work
    work="$(mktemp -d "$cache/rootfs.XXXXXX")"
    local root="$work/rootfs"

    echo "build-base-image: debootstrap $suite from $mirror (log: $work/debootstrap.log)"
    if ! debootstrap --variant=minbase --include=ca-certificates \
            "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
        tail -n 40 "$work/debootstrap.log" >&2
        if [[ -f "$root/debootstrap/debootstrap.log" ]]; then
            tail -n 40 "$root/debootstrap/debootstrap.log" >&2
        fi
        rm -rf "$work"
        return 1
    fi

    # The Debian mirror, as on a stock bookworm host (deb822 sources).
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $sec_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES

    # Container hygiene, as Debian's official images do: no stale package
    # lists or .debs, an empty machine-id, hostname/resolv.conf from Docker.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/cache/apt/*.bin "$root"/var/log/apt/* "$root"/debootstrap
    : >"$root/etc/machine-id"
    rm -f "$root/etc/hostname"

    tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv -f "$tarball.tmp" "$tarball"
    rm -rf "$work"
    echo "build-base-image: cached $tarball ($(du -h "$tarball" | cut -f1))"
}

main "$@"
