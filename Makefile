# Two commands matter: `make run` (gateway + mock-remote as local processes) and `make test` (every test,
# the container tests included). Node >= 22.22 must be on PATH; on the project's CI machines, whose own
# Node is 20, `export PATH="$(bash ../shared/ci/host-node.sh):$PATH"` first.
SHELL := /bin/bash
# The gateway's V8 flags, defined once in package.json ("config".nodeFlags); the Dockerfile is checked against it.
NODE_FLAGS = $(shell node -p 'require("./package.json").config.nodeFlags')
NODE_MAJOR_MIN := 22

.PHONY: help install build typecheck lint format run run-mock smoke bench test test-unit test-integration test-containers test-load check-node check-docker up down logs clean

help:
	@echo "make install | build | lint | format | run | smoke | bench | test | test-unit | test-integration | test-containers | test-load | up | down | logs | clean"

check-node:
	@node -e 'const [a,b]=process.versions.node.split(".").map(Number); if (a<22 || (a===22 && b<22)) { console.error("Node >= 22.22 is needed (found " + process.version + "). Install Node 24 LTS, or on the CI machines: export PATH=\"$$(bash ../shared/ci/host-node.sh):$$PATH\""); process.exit(1) }'

node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

install: check-node node_modules/.package-lock.json

build: install
	npx tsc -p tsconfig.build.json

typecheck: install
	npx tsc --noEmit -p tsconfig.json

# typescript-eslint (typed rules), Prettier and dependency-cruiser (the layering of docs/architecture.md).
lint: install
	npm run lint

# Rewrites files the way `make lint` wants them (Prettier; eslint --fix for what it can).
format: install
	npx prettier --write . && npx eslint --fix .

# Gateway on :8080 (PORT) in the foreground, mock-remote on :8081 (MOCK_PORT) in the background; Ctrl-C stops both.
run: build
	@PORT=$${MOCK_PORT:-8081} node dist/mock-remote/src/main.js & mock=$$!; \
	trap 'kill $$mock 2>/dev/null' EXIT; \
	node $(NODE_FLAGS) dist/gateway/src/main.js

run-mock: build
	node dist/mock-remote/src/main.js

# The three curls of the README against a running gateway (GATEWAY_URL, default http://127.0.0.1:8080).
smoke:
	bash test/smoke.sh

# What the gateway adds per request, as ratios against a bare node:http upstream in the same run (~3 min).
# Writes bench/RESULTS.md. Not part of `make test`: nothing asserts a time. Extra flags: BENCH_ARGS=--quick
bench: build
	node bench/run.mjs $(BENCH_ARGS)

check-docker:
	@command -v docker >/dev/null || { echo "make test: the container tests (the Prometheus one included) need Docker. Install a Docker engine with Compose v2 (Debian: apt-get install docker.io docker-compose; on the CI machines: bash ../shared/ci/docker-engine.sh)" >&2; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "make test: no Docker engine answers. Start dockerd (on the CI machines: bash ../shared/ci/docker-engine.sh) and retry." >&2; exit 1; }
	@docker compose version >/dev/null 2>&1 || { echo "make test: Docker Compose v2 is missing (the compose test needs 'docker compose'). Install docker-compose-plugin." >&2; exit 1; }

# Every jest project (unit, integration, containers, load: see jest.config.js); the targets below run one each.
test: lint build typecheck check-docker
	TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 npx jest $(JEST_ARGS)

test-unit: install
	npm run test:unit -- $(JEST_ARGS)

# The integration and load projects spawn dist/ builds; their jest globalSetup refuses a stale dist/.
test-integration: build
	npm run test:integration -- $(JEST_ARGS)

test-containers: build check-docker
	TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 npm run test:containers -- $(JEST_ARGS)

test-load: build
	npm run test:load -- $(JEST_ARGS)

up:
	docker compose up --build -d --wait

down:
	docker compose down --remove-orphans

logs:
	docker compose logs -f

clean:
	rm -rf dist coverage test-results
