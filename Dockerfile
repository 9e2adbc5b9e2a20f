# syntax=docker/dockerfile:1
# The sniway image: the one binary, for `sniway controller` and `sniway dataplane` alike.
#   docker build -t ghcr.io/sniway/sniway:latest .

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
# The caches speed up rebuilds; the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sniway \
    && install -D -m 0755 target/release/sniway /out/sniway

# glibc and libgcc only, no shell, user 65532: runs with a read-only root filesystem (sniway
# writes no file unless told to with --access-log-path).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sniway /usr/local/bin/sniway
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sniway"]
