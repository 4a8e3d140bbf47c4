# claudegate's PostgreSQL for the state tier: Debian's package on the
# configured base image (images.base_image), no registry. A fixed uid so the
# password file on the host can belong to it (mode 0600) and nobody else.
ARG BASE_IMAGE=claudegate/debian-base:bookworm
FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10002 postgres \
 && useradd --system --uid 10002 --gid postgres --home-dir /var/lib/postgresql --shell /bin/sh postgres \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && ln -s "$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)" /usr/local/lib/pgbin \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data
COPY postgres-start.sh /usr/local/bin/claudegate-postgres
USER 10002:10002
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["/bin/sh", "/usr/local/bin/claudegate-postgres"]
