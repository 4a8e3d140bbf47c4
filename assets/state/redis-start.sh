# Starts redis-server bound to $BIND only, its password read from a file.
# The configuration goes in on stdin (`redis-server -`): the password is
# never in argv (ps) nor in a file inside the container.
set -eu
: "${BIND:?BIND: the private address to listen on}"
: "${PORT:=6379}"
pw=$(cat /run/secrets/redis_password)
case "$pw" in *[!A-Za-z0-9_-]*|"") echo "claudegate-redis: the password file holds unexpected characters" >&2; exit 2;; esac
# TLS=1: the same port speaks TLS only (the certificate and key are mounted
# beside the password); clients are not asked for certificates.
listen="port $PORT"
if [ -n "${TLS:-}" ]; then
  listen="port 0
tls-port $PORT
tls-cert-file /run/secrets/tls.crt
tls-key-file /run/secrets/tls.key
tls-auth-clients no"
fi
printf 'bind %s\n%s\nprotected-mode yes\nrequirepass %s\ndir /var/lib/redis\nappendonly yes\nsave ""\ndaemonize no\nlogfile ""\n' \
  "$BIND" "$listen" "$pw" | exec redis-server -
