# crossgate — run `make help` for the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

BIN := $(CURDIR)/bin
CONTROLLER_GEN := $(BIN)/controller-gen
CRD_DIR := charts/crossgate/crds
RBAC_DIR := charts/crossgate/files/rbac
GO_TEST_FLAGS ?=
# Packages whose tests need no API server.
# Tests on real API servers (and the sandbox) carry the build tag `integration`; without it, `go
# test ./...` runs the unit and golden tests only.
INTEGRATION = -tags integration

##@ General

.PHONY: help
help: ## List every target with what it does.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
		/^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Build

.PHONY: build
build: ## Build every command of the product module into bin/.
	@mkdir -p $(BIN)
	@if [ -n "$$(go list ./cmd/... 2>/dev/null)" ]; then go build -o $(BIN)/ ./cmd/...; else go build ./...; fi

.PHONY: bins
bins: ## Build etcd, kube-apiserver, kube-controller-manager, kubectl, cert-manager's issuer controllers, the conformance echo server and CoreDNS from Go modules into bin/ (cached; skips what is there).
	@tools/bins/build.sh

$(CONTROLLER_GEN): tools/go.mod tools/go.sum
	@mkdir -p $(BIN)
	cd tools && go build -o $(CONTROLLER_GEN) sigs.k8s.io/controller-tools/cmd/controller-gen

.PHONY: tools
tools: $(CONTROLLER_GEN) ## Build the code generators (controller-gen) into bin/.

##@ Generate

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code for the API types.
	find api -name 'zz_generated.*.go' -delete
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRDs into charts/crossgate/crds, the controller's RBAC from its markers into charts/crossgate/files/rbac, and copy the Gateway API CRDs from their module.
	rm -f $(CRD_DIR)/*.yaml
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=$(CRD_DIR)
	$(CONTROLLER_GEN) rbac:roleName=crossgate-controller paths=./controllers/... paths=./dataplane/... paths=./inject/... paths=./xds/identity/certmanager/... paths=./internal/app/... paths=./cmd/crossgate-controller/... output:rbac:artifacts:config=$(RBAC_DIR)
	@gw=$$(go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api); \
	for f in $$gw/config/crd/standard/gateway.networking.k8s.io_*.yaml; do \
		case $$f in *_vap_*) continue ;; esac; \
		install -m 0644 $$f $(CRD_DIR)/; \
	done

.PHONY: testdata
testdata: ## Rewrite the golden files of the translator, xds/translate and the federation plan (then review the diff).
	go test ./translator/... -run 'TestGolden' -count=1 -update
	go test ./xds/translate/... -run 'TestGolden' -count=1 -update
	go test ./controllers/federation/plan/... -run 'TestGolden' -count=1 -update

.PHONY: tidy
tidy: ## Tidy every Go module of the repository.
	go mod tidy
	cd tools && go mod tidy
	cd tools/lint && go mod tidy
	cd tools/bins/k8s && go mod tidy
	cd tools/bins/kcm && go mod tidy
	cd tools/bins/echo && go mod tidy
	cd tools/bins/coredns && go mod tidy
	cd tools/bins/etcd && go mod tidy
	cd tools/bins/certmanager && go mod tidy

.PHONY: verify
verify: generate manifests testdata tidy ## Regenerate code, CRDs and goldens, tidy, and fail if anything changed.
	@gofmt -l $$(git ls-files '*.go') | (! grep .) || { echo "verify: run gofmt on the files above"; exit 1; }
	@git diff --exit-code || { echo "verify: generated files are out of date: run make generate manifests tidy and commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all)" || \
		{ git status --porcelain --untracked-files=all; echo "verify: generation made files that are not committed"; exit 1; }

##@ Test

.PHONY: test
test: test-unit test-integration test-sandbox ## Run every test: unit and golden, integration on real API servers, the sandbox walkthrough, Gateway API conformance.

.PHONY: test-unit
test-unit: ## Run the unit and golden tests (no API server needed; the integration tests carry the build tag integration), and vet the kind end-to-end suite (it needs Docker to run).
	go test $(GO_TEST_FLAGS) ./...
	go vet -tags e2e ./test/e2e/...

.PHONY: test-integration
test-integration: bins ## Run the tests on real etcd and kube-apiserver processes (builds bin/ first).
	go test $(GO_TEST_FLAGS) $(INTEGRATION) -p 1 -timeout 30m ./test/integration/... ./sandbox/... ./test/member/... ./test/incremental/... ./test/federation/... ./test/membership/... ./test/install/... ./test/certmanager/... ./test/crds/... ./test/bench/...

.PHONY: test-security
test-security: bins ## Run the threat model's tests (the list in test/security), package by package.
	CROSSGATE_SECURITY=run go test -count=1 -timeout 90m -v -run TestThreatModel ./test/security/

.PHONY: test-sandbox
test-sandbox: bins ## Run the sandbox as a user would (crossgate sandbox up/down, the walkthrough asserted), and the Gateway API conformance suite's GATEWAY-HTTP profile against it.
	go test $(GO_TEST_FLAGS) $(INTEGRATION) -p 1 -timeout 30m ./test/cli/... ./test/demo/... ./test/conformance/...

.PHONY: conformance
conformance: bins ## Run the Gateway API conformance suite (GATEWAY-HTTP profile) against crossgate in a sandbox cluster, verbosely; its report goes to bin/conformance-report.yaml.
	CONFORMANCE_REPORT=$(BIN)/conformance-report.yaml go test $(INTEGRATION) -count=1 -timeout 40m -v ./test/conformance/

.PHONY: conformance-kind
conformance-kind: ## Run the same suite against crossgate on a kind cluster of its own (real Envoy; needs Docker and cloud-provider-kind on the PATH); its report goes to bin/conformance-report-kind.yaml.
	CONFORMANCE_REPORT=$(BIN)/conformance-report-kind.yaml go test -tags e2e -count=1 -timeout 60m -v -run TestConformance ./test/e2e/

.PHONY: lint
lint: ## golangci-lint (pinned in tools/lint, config .golangci.yml) and go vet over every package and build tag.
	@tools/bins/build.sh golangci-lint
	@gofmt -l $$(git ls-files '*.go') | (! grep .) || { echo "lint: run gofmt on the files above"; exit 1; }
	go vet ./...
	go vet -tags integration ./...
	go vet -tags e2e ./test/e2e/...
	$(BIN)/golangci-lint run ./...
	$(BIN)/golangci-lint run --build-tags e2e ./test/e2e/...

.PHONY: fmt
fmt: ## Format every Go file as make lint wants it (gofumpt, imports grouped by gci).
	@tools/bins/build.sh golangci-lint
	$(BIN)/golangci-lint fmt ./...

.PHONY: bench
bench: bins ## Run the benchmarks of shared/reference/performance.md at full size and print their JSON lines (B0-B6, B2e, B9, B10), each in a process of its own.
	@failed=""; for b in B0 B1 B2 B2e B3 B4 B5 B6 B9; do \
		CROSSGATE_BENCH=full go test $(INTEGRATION) ./test/bench/ -run "^Test$$b\$$" -count=1 -timeout 60m -v > bin/bench-$$b.log 2>&1; \
		grep '^{' bin/bench-$$b.log || failed="$$failed $$b"; \
	done; \
	if [ -n "$$failed" ]; then echo "bench: failed:$$failed (their output: bin/bench-<name>.log)" >&2; exit 1; fi

.PHONY: e2e-kind
e2e-kind: bins ## Build the images, create four kind clusters, install with the CLI, join, and assert the walkthrough with real Envoy (needs Docker).
	go test -tags e2e -count=1 -timeout 60m -v ./test/e2e/...

##@ Run

.PHONY: demo
demo: bins build ## Bring the sandbox up, replay the multi-cluster walkthrough with kubectl, print each outcome, tear down.
	@dir=$$(mktemp -d -t crossgate-demo-XXXXXX); \
	bin/crossgate sandbox up --dir $$dir || exit 1; \
	bin/crossgate sandbox demo --dir $$dir; rc=$$?; \
	bin/crossgate sandbox down --dir $$dir; rm -rf $$dir; exit $$rc
