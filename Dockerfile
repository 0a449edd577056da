# syntax=docker/dockerfile:1
# sts-broker: a release build in a Rust image, run from a small Debian image as a non-root
# user. Build: docker build -t sts-broker .

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# aws-lc-sys ships prebuilt bindings for x86_64/aarch64 Linux: the image's C compiler is
# all the build needs.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sts-broker \
 && cp target/release/sts-broker /usr/local/bin/sts-broker

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 sts-broker \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/sts-broker --create-home sts-broker
COPY --from=build /usr/local/bin/sts-broker /usr/local/bin/sts-broker
COPY policies /etc/sts-broker/policies
USER 10001:10001
WORKDIR /var/lib/sts-broker
ENV STS_BROKER_LISTEN=0.0.0.0:8080 \
    STS_BROKER_POLICIES_DIR=/etc/sts-broker/policies \
    STS_BROKER_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sts-broker"]
CMD ["serve"]
