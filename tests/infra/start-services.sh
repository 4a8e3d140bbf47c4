#!/usr/bin/env bash
# Start the services the test-suite needs, and return once they answer.
#
# Today that is one service: a Docker engine (Debian's docker.io). There is
# no systemd on the CI machine, so dockerd is started in the background
# with a pid file and a log file. Safe to run again: if an engine already
# answers, nothing is started.
#
# Environment:
#   CLAUDEGATE_TEST_LOG_DIR   where logs go (default /var/log/claudegate-test)
#   DOCKER_WAIT_SECONDS       how long to wait for the engine (default 60)
set -euo pipefail

main() {
    local log_dir="${CLAUDEGATE_TEST_LOG_DIR:-/var/log/claudegate-test}"
    local wait_s="${DOCKER_WAIT_SECONDS:-60}"
    local log="$log_dir/dockerd.log"
    local pidfile=/var/run/docker.pid
    mkdir -p "$log_dir"

    if ! command -v dockerd >/dev/null 2>&1; then
        echo "start-services: dockerd not found: install the packages in tests/infra/REQUIREMENTS.md" >&2
        return 1
    fi

    # One starter at a time: another session or CI step may run this too.
    exec 9>"$log_dir/start-services.lock"
    flock -w "$wait_s" 9

    if docker info >/dev/null 2>&1; then
        echo "start-services: docker engine already answers"
        return 0
    fi

    local log_offset
    log_offset="$(stat -c %s "$log" 2>/dev/null || echo 0)"
    local started=0
    if ! pid_is dockerd "$(cat "$pidfile" 2>/dev/null || true)"; then
        # No engine, or a stale pid file from a killed one (dockerd refuses
        # to start while the file exists). Same for the containerd it
        # manages: a pid file naming a dead or zombie containerd makes the
        # new dockerd wait 20 s for it and give up.
        rm -f "$pidfile"
        local ctd_pidfile=/var/run/docker/containerd/containerd.pid
        if ! pid_is containerd "$(cat "$ctd_pidfile" 2>/dev/null || true)"; then
            rm -f "$ctd_pidfile"
        fi
        echo "start-services: starting dockerd (log: $log)"
        daemon dockerd --pidfile "$pidfile" >>"$log" 2>&1 </dev/null
        started=1
    else
        echo "start-services: dockerd (pid $(cat "$pidfile")) is starting; waiting"
    fi

    local i
    for ((i = 1; i <= wait_s * 4; i++)); do
        if docker info >/dev/null 2>&1; then
            echo "start-services: docker engine ready after ~$((i / 4)) s"
            return 0
        fi
        # dockerd writes its pid file early; none after 5 s means it died.
        if ((started && i >= 20)) && ! pid_is dockerd "$(cat "$pidfile" 2>/dev/null || true)"; then
            echo "start-services: dockerd exited during start-up; its log:" >&2
            tail -c +"$((log_offset + 1))" "$log" | tail -n 40 >&2 || true
            return 1
        fi
        sleep 0.25
    done
    echo "start-services: docker engine did not answer within ${wait_s} s; its log:" >&2
    tail -c +"$((log_offset + 1))" "$log" | tail -n 40 >&2 || true
    return 1
}

# daemon CMD...: start CMD in the background in its own session (setsid: the end
# of this shell or CI step does not take it along), holding no descriptor of
# ours but 0-2. Not fd 9 (the lock above), nor any a caller's flock holds:
# `flock /work/docker-e2e.lock tests/infra/pristine-ci.sh` hands its fd 3 down to
# here, and a dockerd that keeps it holds every session's e2e lock for as long
# as it runs.
daemon() {
    (
        local fd
        for fd in /proc/"$BASHPID"/fd/*; do
            fd="${fd##*/}"
            if ((fd > 2)); then eval "exec $fd>&-"; fi
        done
        exec setsid "$@"
    ) &
}

# pid_is NAME PID: true if PID is a live (not zombie) process called NAME.
pid_is() {
    local name="$1" pid="$2" stat
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ "$stat" == "$pid ($name) "* ]] || return 1
    [[ "$(cut -d' ' -f3 <<<"$stat")" != Z ]]
}

# Sourced (tests/test_start_services.py), it only defines the functions.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
