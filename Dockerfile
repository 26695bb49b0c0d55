# The agentid container image, ghcr.io/agentid/agentid (the name deploy/ uses; its tag is the
# workspace version): one static-enough binary, /agentid, for every part (`agentid sts serve`,
# `agentid gateway`, `agentid sidecar`, `agentid agent`). The manifests start it with
# `command: [/agentid]` and the part's subcommand as `args`.
#
# NOT BUILT HERE: the machines that develop and test agentid have no Docker or other image
# builder, so this file has never been built by this project's CI. What is checked instead
# (crates/cli/tests/dockerfile.rs): the build stage compiles the same package and binary, with
# the same toolchain and `--locked`, as CI does; the runtime stage puts the binary where the
# manifests' `command` expects it, runs as the non-root user the manifests ask for, and every
# manifest's `args` is a command line this binary accepts.
#
# Build: docker build -t ghcr.io/agentid/agentid:0.1.0 .

# ---- build: the toolchain CI uses (stable Rust 1.95), the lock file as committed -------------
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# rustls with ring: no OpenSSL, nothing to install. The CA roots come from the runtime image.
RUN cargo build --release --locked -p agentid --bin agentid \
 && install -D -m 0555 target/release/agentid /out/agentid

# ---- runtime: glibc and CA certificates, no shell, no package manager ----------------------
# `nonroot` is uid/gid 65532, the runAsUser/runAsGroup of every agentid pod in deploy/.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/agentid /agentid
USER 65532:65532
# Works with readOnlyRootFilesystem: the binary writes only where it is told (the STS's
# --data-dir and the agent's $AGENTID_HOME are volumes in deploy/), never under / or /tmp.
ENTRYPOINT ["/agentid"]
