# syntax=docker/dockerfile:1
# Sentinel proxy image: `docker build -t sentinel .`, then
#   docker run -p 8080:8080 -p 9090:9090 sentinel
#   docker run -v $PWD/my.kdl:/etc/sentinel/sentinel.kdl:ro -p 8080:8080 sentinel
# Checked by test/ops/Deploy.test.ts (no Docker engine needed): the stages, `npm ci --omit=dev`,
# the non-root user, the health check, and that the command is the serving process itself
# (PID 1, draining on SIGTERM).

# --- build: all dependencies, compile TypeScript to dist/ ------------------------------------
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY scripts ./scripts
COPY src ./src
COPY agents ./agents
# `npm ci` runs the `prepare` script, which is the build
RUN npm ci --no-audit --no-fund

# --- runtime: production dependencies and the build only --------------------------------------
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    SENTINEL_CONFIG=/etc/sentinel/sentinel.kdl
WORKDIR /app
COPY package.json package-lock.json ./
# no dev dependencies; no `prepare` (the build comes from the stage above)
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config ./config
# the .proto the gRPC agent transport loads (found beside package.json)
COPY proto ./proto
# the default configuration for a container: listens on all interfaces, metrics on :9090
COPY deploy/docker/sentinel.kdl /etc/sentinel/sentinel.kdl
# the image's own user (uid 1000 in the node images): never root
USER node
EXPOSE 8080 9090
# the builtin health endpoint of the default configuration
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:8080/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
# The V8 flags of src/RuntimeFlags.ts are given here, so the proxy does not re-execute itself:
# this node process is PID 1 and drains on SIGTERM (up to graceful-shutdown-timeout-secs).
CMD ["node", "--max-semi-space-size=64", "--no-allocation-site-pretenuring", "dist/main.js", "run"]
