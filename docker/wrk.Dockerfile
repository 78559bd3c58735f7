# The load generator of the compose `bench` profile: Debian's wrk with ferry's wrk/ scripts.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends wrk curl python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /bench
COPY wrk/upload.lua wrk/download.lua wrk/postdata.py wrk/compose_bench.sh ./
ENTRYPOINT ["sh", "/bench/compose_bench.sh"]
