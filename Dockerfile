# Images for the gateway and its mock upstream, from one build. Final targets:
#   gateway      (the default, last stage)   docker build -t inference-gateway .
#   mock-remote                              docker build --target mock-remote -t inference-gateway-mock .
# docker-compose.yml and test/containers build these same targets.
# No BuildKit-only syntax (cache mounts, heredocs): testcontainers builds with the classic builder.

# All dependencies, for the TypeScript build.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM deps AS build
COPY tsconfig.json tsconfig.build.json ./
COPY gateway/src gateway/src
COPY mock-remote/src mock-remote/src
RUN npx tsc -p tsconfig.build.json

# Production dependencies only. Built on `deps` so npm installs from the cache the first `npm ci` filled
# instead of downloading again; only node_modules leaves this stage.
FROM deps AS prod-deps
RUN npm ci --omit=dev --no-audit --no-fund --prefer-offline

# What both final images share (so their layers are stored once). Files stay owned by root: the app runs
# as `node` and cannot rewrite its own code or config.
FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json ./
COPY --from=prod-deps /app/node_modules node_modules
COPY --from=build /app/dist dist
USER node
# The images' HEALTHCHECK: GET /health over bash's /dev/tcp, 200 or unhealthy. Not a `node -e fetch(...)`: a
# Node process per check cost ~0.25 s of CPU (every 5 s, ~5% of a core per container), and on a busy machine
# it outlasted its timeout, so Swarm restarted tasks that were serving fine (test/containers/swarm.test.ts
# caught it). bash and the request cost ~0.04 s. The timeout is generous for the same reason: a check that
# fails is a restart, and a process slow to answer under load is not a hung one.

FROM runtime AS mock-remote
ENV PORT=8081
EXPOSE 8081
HEALTHCHECK --interval=5s --timeout=10s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8081} && printf 'GET /health HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 8 status <&3 && [[ $status == 'HTTP/1.1 200 '* ]]"]
# node itself, not npm: npm does not pass SIGTERM on, and the process must see it to stop cleanly.
CMD ["node", "dist/mock-remote/src/main.js"]

FROM runtime AS gateway
# config/config.yaml is the default (CONFIG_FILE); compose and the container tests use config/compose.yaml.
COPY config config
ENV PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=10s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8080} && printf 'GET /health HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nConnection: close\\r\\n\\r\\n' >&3 && read -r -t 8 status <&3 && [[ $status == 'HTTP/1.1 200 '* ]]"]
# Drains requests in flight on SIGTERM (SHUTDOWN_TIMEOUT, default 10 s) and exits 0.
# A small young generation (4 MiB semi-spaces): V8 otherwise grows it to 128 MiB under load, which costs RSS
# and buys nothing here, since next to nothing of a finished request survives a scavenge. The old generation
# may grow 20% past what was live after its last full GC (V8's own factor goes up to 4x): with thousands of
# open streams it otherwise filled with promoted garbage, RSS rising round after round (bench/README.md).
CMD ["node", "--max-semi-space-size=4", "--heap-growing-percent=20", "dist/gateway/src/main.js"]
