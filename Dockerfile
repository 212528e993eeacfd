# The userorg image of docker-compose.yml: a release build, run from a slim Debian.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin userorg

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data userorg \
    && mkdir -p /data/keys && chown -R userorg /data && chmod 700 /data/keys
COPY --from=build /src/target/release/userorg /usr/local/bin/userorg
COPY config/docker.toml /etc/userorg/docker.toml
USER userorg
EXPOSE 9000 9001
ENTRYPOINT ["userorg", "--config", "/etc/userorg/docker.toml"]
CMD ["serve"]
