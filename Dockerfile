# syntax=docker/dockerfile:1
# The `portcullis` image the Helm chart runs (values.yaml `image`: controller, authz,
# ratelimit, and the demo echo backend of e2e/kind): the one binary, on distroless,
# as uid 65532 (the chart's podSecurityContext). Envoy is the stock envoyproxy/envoy image.
#
#   docker build -t ghcr.io/portcullis-dev/portcullis:0.1.0 .
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# protox compiles the .proto files in build scripts: no protoc needed. The caches keep
# rebuilds incremental; the binary is copied out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p portcullis --bin portcullis \
    && cp target/release/portcullis /usr/local/bin/portcullis

# glibc and libgcc_s are all the binary links (TLS is rustls).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/portcullis /usr/local/bin/portcullis
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["--help"]
