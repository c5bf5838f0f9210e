# Pizzashop. `make help` lists every target; `make run` and `make test` are
# the two a newcomer needs.

SHELL      := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS    := -s -w -X github.com/pizzashop/pizzashop/pkg/app.Version=$(VERSION)
BIN        := bin
BUF        := .bin/buf
JAEGER     := .bin/jaeger
# Every module of the workspace, as package patterns for go test / go vet.
MODULES    := $(shell go list -m -f '{{.Dir}}/...' 2>/dev/null)
BINARIES   := ./services/menu ./services/order ./services/kitchen ./services/delivery ./gateway ./cmd/pizzashop
ROLE       ?= customer
SUB        ?= alice

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: build ## Run the whole shop locally: embedded NATS + FerretDB under ./data, every service, gateway on :8080
	$(BIN)/pizzashop run

.PHONY: run-cluster
run-cluster: build ## make run with two processes of every service and a three-node NATS cluster (streams of three replicas)
	$(BIN)/pizzashop run --replicas 2

.PHONY: run-traces
run-traces: build $(JAEGER) ## make run plus a trace viewer (Jaeger) on http://localhost:16686: every request and event of an order
	$(BIN)/pizzashop run --jaeger $(JAEGER)

.PHONY: walkthrough
walkthrough: build ## Run the README walk-through against the running shop (make run in another terminal, fresh data)
	scripts/walkthrough.sh

.PHONY: build
build: ## Build every binary into ./bin
	go build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(BINARIES)

.PHONY: token
token: ## Print a credential: make token ROLE=admin SUB=maria (roles: customer kitchen courier admin service)
	@go run ./cmd/pizzashop token --role $(ROLE) --sub $(SUB)

.PHONY: deadletters
deadletters: ## List dead letters (replay with: bin/pizzashop deadletters replay SEQ... | --all)
	@go run ./cmd/pizzashop deadletters list

.PHONY: load
load: ## Load the running shop (its PIZZASHOP_* ports): make load RATE=50 DURATION=30s MODE=lifecycle|place [CLIENTS=32] [ARGS=-ramp]; report in bin/load-report.*
	@mkdir -p $(BIN)
	go run ./cmd/loadgen -mode $(or $(MODE),lifecycle) -rate $(or $(RATE),50) -duration $(or $(DURATION),20s) $(if $(CLIENTS),-clients $(CLIENTS)) -report $(BIN)/load-report $(ARGS)

.PHONY: bench-capacity
bench-capacity: build ## Placement on the real path and on a baseline that stores nothing, alternately, 3 rounds each, on a stack of its own (ORDERS=1000 CLIENTS=32)
	go run ./cmd/loadgen bench-capacity -bin $(BIN) -orders $(or $(ORDERS),1000) -clients $(or $(CLIENTS),32) -rounds $(or $(ROUNDS),3) -report $(BIN)/bench-capacity

.PHONY: test
test: ## Run every module's tests against embedded NATS and FerretDB (or NATS_URL / MONGO_URI)
	go test -count=1 -timeout 20m $(MODULES)
	cd deploy/check && GOWORK=off go test -count=1 ./...
	GOWORK=off go -C tools test -count=1 ./apidocs

.PHONY: test-replicas
test-replicas: ## Run the e2e lifecycle, race, fault and ordering tests again with two replicas of every service and a NATS cluster of three
	PIZZASHOP_E2E_REPLICAS=2 go test -count=1 -timeout 15m -run '^(TestLifecycle|TestCancelStartRace|TestKitchenCrash|TestNATSOutage|TestStoreOutage|TestOrdering)$$' ./e2e

.PHONY: test-short
test-short: ## Run the tests with -short: skips the browser, smoke, replica, abuse and walk-through tests and the slowest store tests; the e2e lifecycle and fault tests still run
	go test -short -count=1 $(MODULES)

.PHONY: test-race
test-race: ## Run every module's tests with the race detector
	go test -race -count=1 -timeout 30m $(MODULES)

.PHONY: fuzz
fuzz: ## Fuzz the card number scanner and the order body decoding, FUZZTIME each (default 30s); a failing input is saved to the testdata corpus
	go test ./pkg/cardscan -run '^$$' -fuzz '^FuzzContains$$' -fuzztime $(or $(FUZZTIME),30s)
	go test ./gateway/internal/edge -run '^$$' -fuzz '^FuzzOrderBody$$' -fuzztime $(or $(FUZZTIME),30s)

.PHONY: abuse
abuse: ## Run the abuse suite on a stack of its own, started by the test (bad keys, card numbers, oversized and slow requests, stream floods, a stalled store)
	go test -count=1 -run '^TestAbuse$$' -v ./e2e

.PHONY: bench
bench: ## Run the Go benchmarks
	go test -run '^$$' -bench . -benchmem $(MODULES)

.PHONY: lint
lint: $(BUF) ## buf lint + breaking against main, go vet, gofmt, deploy files
	$(BUF) lint
	@if git rev-parse --verify -q main >/dev/null; then $(BUF) breaking --against '.git#branch=main'; fi
	go vet $(MODULES)
	GOWORK=off go -C tools vet ./apidocs
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(MAKE) deploy-check

.PHONY: deploy-check
deploy-check: ## Validate docker-compose.yml and the Kubernetes manifests offline
	cd deploy/check && GOWORK=off go run . ../..

.PHONY: generate
generate: $(BUF) ## Regenerate Go, the OpenAPI document and the AsyncAPI event catalogue from proto/ (offline)
	rm -rf .bin/apidocs
	$(BUF) generate
	$(BUF) build --as-file-descriptor-set -o .bin/apidocs/protos.binpb
	GOWORK=off go -C tools run ./apidocs -protos $(CURDIR)/.bin/apidocs/protos.binpb \
		-openapi $(CURDIR)/.bin/apidocs/openapi -out $(CURDIR)/gateway/openapi

# The API documents' checkers, from npm, pinned and installed on first use.
REDOCLY_VERSION  := 2.77.0
ASYNCAPI_VERSION := 4.1.1
APIDOCS_NPM ?= $(HOME)/.cache/pizzashop/apidocs-npm-$(REDOCLY_VERSION)-$(ASYNCAPI_VERSION)

.PHONY: apidocs-tools
apidocs-tools: ## Install the pinned redocly and AsyncAPI CLIs from npm (once, into APIDOCS_NPM)
	@test -x $(APIDOCS_NPM)/node_modules/.bin/redocly -a -x $(APIDOCS_NPM)/node_modules/.bin/asyncapi || \
		npm install --prefix $(APIDOCS_NPM) --no-audit --no-fund --loglevel=error \
			@redocly/cli@$(REDOCLY_VERSION) @asyncapi/cli@$(ASYNCAPI_VERSION)
	@echo '{"analyticsEnabled":"false","infoMessageShown":"true"}' > $(APIDOCS_NPM)/asyncapi-analytics.json

.PHONY: lint-apidocs
lint-apidocs: apidocs-tools ## Check the OpenAPI document with redocly and the event catalogue with the AsyncAPI CLI
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true $(APIDOCS_NPM)/node_modules/.bin/redocly lint \
		--config gateway/openapi/redocly.yaml gateway/openapi/pizzashop.openapi.json
	ASYNCAPI_METRICS_CONFIG_PATH=$(APIDOCS_NPM)/asyncapi-analytics.json \
		$(APIDOCS_NPM)/node_modules/.bin/asyncapi validate gateway/openapi/pizzashop.asyncapi.json

.PHONY: check-generate
check-generate: generate ## Fail if the committed generated code is not what `make generate` produces
	@git diff --exit-code -- proto gateway/openapi || { echo "generated code is stale: run make generate and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto gateway/openapi)" || { git status --porcelain -- proto gateway/openapi; echo "generated files are not committed"; exit 1; }

.PHONY: tools
tools: $(BUF) ## Build the pinned code generation tools
	GOWORK=off go -C tools build -o /dev/null tool

# Jaeger v2, pinned in tools/jaeger and built from the Go module proxy
# (a few minutes, once).
$(JAEGER): tools/jaeger/go.mod
	GOWORK=off go -C tools/jaeger build -trimpath -o ../../$(JAEGER) github.com/jaegertracing/jaeger/cmd/jaeger

$(BUF): tools/buf/go.mod
	GOWORK=off go -C tools/buf build -o ../../$(BUF) github.com/bufbuild/buf/cmd/buf

.PHONY: clean
clean: ## Remove build output: ./bin and .bin, the built tools and trace viewer (keeps ./data)
	rm -rf $(BIN) .bin

.PHONY: clean-data
clean-data: ## Delete the local shop's data (./data)
	rm -rf data
