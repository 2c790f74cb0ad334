# glance-rs on Debian: the binary built beforehand (`cargo build --release --features rbd`, or
# the path given as GLANCE_RS_BINARY), the sample configuration, the image directory in a
# volume. Settings come from the environment as OS_<SECTION>__<KEY> (see docker-compose.yml).
FROM debian:bookworm-slim
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
       librbd1 ca-certificates curl >/dev/null \
    && rm -rf /var/lib/apt/lists/*
ARG GLANCE_RS_BINARY=target/release/glance-rs
COPY ${GLANCE_RS_BINARY} /usr/local/bin/glance-rs
COPY etc/glance-api.conf /etc/glance/glance-api.conf
RUN mkdir -p /var/lib/glance/images
EXPOSE 9292
# The schema first (idempotent: created or upgraded), then serve.
CMD ["sh", "-c", "glance-rs --config-file /etc/glance/glance-api.conf db sync && exec glance-rs --config-file /etc/glance/glance-api.conf serve"]
