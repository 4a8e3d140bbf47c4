# Starts PostgreSQL listening on $BIND only. First start: a cluster whose
# superuser `claudegate` has the password from the file (scram-sha-256), a
# database `claudegate`, and connections accepted from private ranges only,
# always with the password; no Unix socket (the root file system is
# read-only, and every client comes over TCP). Every start sets the password from the file
# again (the file is the truth), through single-user mode's stdin: never argv.
set -eu
: "${BIND:?BIND: the private address to listen on}"
: "${PORT:=5432}"
PGDATA=/var/lib/postgresql/data/pgdata
bin=/usr/local/lib/pgbin
pw=$(cat /run/secrets/postgres_password)
case "$pw" in *[!A-Za-z0-9_-]*|"") echo "claudegate-postgres: the password file holds unexpected characters" >&2; exit 2;; esac
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  "$bin/initdb" -D "$PGDATA" -U claudegate --pwfile=/run/secrets/postgres_password \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 >/dev/null
  echo "CREATE DATABASE claudegate OWNER claudegate;" | "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
fi
# Written at every start: TLS=1 turns every allowed line into hostssl (TLS or nothing).
kind=host
tls=""
if [ -n "${TLS:-}" ]; then
  kind=hostssl
  tls="-c ssl=on -c ssl_cert_file=/run/secrets/tls.crt -c ssl_key_file=/run/secrets/tls.key"
fi
for net in 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16; do
  echo "$kind all all $net scram-sha-256"
done >"$PGDATA/pg_hba.conf"
echo "ALTER ROLE claudegate PASSWORD '$pw';" | "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses="$BIND" -c port="$PORT" \
  -c unix_socket_directories= -c password_encryption=scram-sha-256 $tls
