#!/usr/bin/env bash
# The tests' base image: the same recipe `claudegate try` and a deploy offer
# when no registry is reachable (assets/base/build-base-image.sh).
exec bash "$(dirname "$0")/../../assets/base/build-base-image.sh" "$@"
