# The numerous-tasks platform daemon. Build:
#   docker build -t numerous-executor .
# Run (a token is required beyond loopback; the data directory is a volume):
#   docker run -p 7777:7777 -e NUMEROUS_EXECUTOR_TOKEN=change-me -v numerous-data:/data \
#     -v "$PWD/dist:/app/dist:ro" numerous-executor
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
# better-sqlite3 compiles from source when no prebuilt binary can be fetched.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# Build native modules against the image's own Node.js headers when it has them (no download).
RUN for prefix in /usr/local /usr; do \
      if [ -f "$prefix/include/node/node.h" ]; then export npm_config_nodedir="$prefix"; break; fi; \
    done; \
    npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json index.ts ./
COPY sdk sdk
COPY executor-local executor-local
COPY executor-platform executor-platform
COPY proto proto
RUN npm run build && npm prune --omit=dev --no-audit --no-fund && chmod +x dist/executor-platform/cli/cli.js

FROM ${NODE_IMAGE}
RUN (getent group numerous || groupadd --system numerous) \
 && (getent passwd numerous || useradd --system --gid numerous --home-dir /data --shell /usr/sbin/nologin numerous) \
 && mkdir -p /data /app && chown numerous:numerous /data
WORKDIR /opt/numerous-tasks
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto ./proto
# Task modules mounted under /app that import "numerous-tasks" find this copy: resolution walks
# up to /node_modules.
RUN ln -s /opt/numerous-tasks/dist/executor-platform/cli/cli.js /usr/local/bin/numerous-executor \
 && mkdir -p /node_modules && ln -s /opt/numerous-tasks /node_modules/numerous-tasks
ENV NODE_ENV=production \
    NUMEROUS_EXECUTOR_LISTEN=0.0.0.0:7777 \
    NUMEROUS_EXECUTOR_DATA_DIR=/data \
    NUMEROUS_EXECUTOR_APP_ROOT=/app \
    NUMEROUS_EXECUTOR_ADDRESS=127.0.0.1:7777
VOLUME ["/data"]
EXPOSE 7777
USER numerous
WORKDIR /app
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["numerous-executor", "health"]
ENTRYPOINT ["numerous-executor"]
CMD ["serve"]
