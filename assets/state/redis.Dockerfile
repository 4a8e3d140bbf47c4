# claudegate's Redis for the state tier: Debian's package on the configured
# base image (images.base_image), no registry. A fixed uid so the password
# file on the host can belong to it (mode 0600) and nobody else.
ARG BASE_IMAGE=claudegate/debian-base:bookworm
FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10003 redis \
 && useradd --system --uid 10003 --gid redis --home-dir /var/lib/redis --shell /usr/sbin/nologin redis \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && install -d -o redis -g redis -m 0700 /var/lib/redis
COPY redis-start.sh /usr/local/bin/claudegate-redis
USER 10003:10003
VOLUME /var/lib/redis
ENTRYPOINT ["/bin/sh", "/usr/local/bin/claudegate-redis"]
