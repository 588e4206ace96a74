# syntax=docker/dockerfile:1
# Multi-stage build: compile TypeScript with dev dependencies, ship only production ones.
# The Node version is pinned to the one CI runs the test suite on (npx node@24).
ARG NODE_IMAGE=node:24.21.0-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM ${NODE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="auth0-eventgrid-bridge" \
      org.opencontainers.image.description="Auth0 log stream in, CloudEvents 1.0 out to Azure Event Grid" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production
# Heap sized for the bridge's bounded in-flight work (MAX_INFLIGHT_EVENTS): without a cap V8 grows
# its heap lazily to hundreds of MB under load. The benchmark runs the bridge with these same flags
# (BENCHMARKS.md); deploy/kubernetes sets the same value, and a test keeps the three in step.
ENV NODE_OPTIONS="--max-old-space-size=160 --max-semi-space-size=8"
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY config ./config
# The official image's unprivileged `node` user, by number so that Kubernetes' runAsNonRoot can verify
# it without a runAsUser (deploy/kubernetes sets runAsUser: 1000 anyway).
USER 1000:1000
EXPOSE 8080 9464
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.ADMIN_PORT||9464)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
# Declared last so that changing them does not invalidate the cached layers above. VERSION defaults to
# package.json's version (a test checks that they agree); pass the others from CI, e.g.
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" --build-arg SOURCE=https://github.com/<owner>/auth0-eventgrid-bridge .
ARG VERSION=0.1.0
ARG REVISION=""
ARG SOURCE=""
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
CMD ["node", "dist/main.js"]
