# Starts redis-server bound to $BIND only, its password read from a file.
# The configuration goes in on stdin (`redis-server -`): the password is
# never in argv (ps) nor in a file inside the container.
set -eu
: "${BIND:?BIND: the private address to listen on}"
: "${PORT:=6379}"
pw=$(cat /run/secrets/redis_password)
case "$pw" in *[!A-Za-z0-9_-]*|"") echo "claudegate-redis: the password file holds unexpected characters" >&2; exit 2;; esac
printf 'bind %s\nport %s\nprotected-mode yes\nrequirepass %s\ndir /var/lib/redis\nappendonly yes\nsave ""\ndaemonize no\nlogfile ""\n' \
  "$BIND" "$PORT" "$pw" | exec redis-server -
