#!/bin/sh
# PID 1's only child: prepare what sshd needs and run it in the foreground.
set -eu
mkdir -p /run/sshd
chmod 0755 /run/sshd
# Host keys copied in by the test helper are kept; missing types are made.
ssh-keygen -A >/dev/null
exec /usr/sbin/sshd -D -e
