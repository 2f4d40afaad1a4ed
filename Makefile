# Build, test and demo entry points. CI runs .ci/run, which calls these.
GO ?= go

.PHONY: all build test demo fmt-check postgres proto chromium nodejs

all: build

build:
	$(GO) build ./...

# postgres installs Debian's PostgreSQL server when deploy/localpg's
# FindBinaries would find none (initdb with pg_ctl beside it on PATH, or
# /usr/lib/postgresql/*/bin/initdb); the package also creates the postgres
# OS user that localpg runs the server as when we are root.
postgres:
	@found=; \
	if p=$$(command -v initdb 2>/dev/null) && [ -x "$$(dirname "$$(readlink -f "$$p")")/pg_ctl" ]; then found=$$p; fi; \
	for f in /usr/lib/postgresql/*/bin/initdb; do \
		if [ -x "$$f" ] && [ -x "$$(dirname "$$f")/pg_ctl" ]; then found=$$f; fi; \
	done; \
	if [ -n "$$found" ]; then exit 0; fi; \
	echo "PostgreSQL server not found; installing Debian's postgresql package"; \
	sudo=; \
	if [ "$$(id -u)" -ne 0 ]; then \
		if command -v sudo >/dev/null 2>&1; then sudo=sudo; \
		else echo "make postgres: need root or sudo to install postgresql" >&2; exit 1; fi; \
	fi; \
	$$sudo apt-get update && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql

# chromium installs Debian's chromium when missing: the load-test report's
# test opens the HTML page in it headless (without it the test skips, saying
# why, or fails when CI is set, as .ci/run sets it).
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then exit 0; fi; \
	echo "chromium not found; installing Debian's chromium package"; \
	sudo=; \
	if [ "$$(id -u)" -ne 0 ]; then \
		if command -v sudo >/dev/null 2>&1; then sudo=sudo; \
		else echo "make chromium: no root or sudo; the report's browser test will skip (fail under CI)" >&2; exit 0; fi; \
	fi; \
	$$sudo apt-get update && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium || \
	echo "make chromium: install failed; the report's browser test will skip (fail under CI)" >&2

# nodejs installs Debian's nodejs and npm when either is missing: the
# generated-client test (gateway/api/clienttest) runs under them; without
# them it skips, saying why, or fails when CI is set.
nodejs:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then exit 0; fi; \
	echo "node or npm not found; installing Debian's nodejs and npm packages"; \
	sudo=; \
	if [ "$$(id -u)" -ne 0 ]; then \
		if command -v sudo >/dev/null 2>&1; then sudo=sudo; \
		else echo "make nodejs: no root or sudo; the generated-client test will skip (fail under CI)" >&2; exit 0; fi; \
	fi; \
	$$sudo apt-get update && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nodejs npm || \
	echo "make nodejs: install failed; the generated-client test will skip (fail under CI)" >&2

test: postgres chromium nodejs
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

# demo runs the whole platform in one process on a private Postgres and an
# in-process Kafka broker: 100,000 customers, a two-minute Double-11 night,
# settlement, reconciliation and the no-lost-orders audit (fundctl demo).
demo: postgres
	$(GO) run ./cmd/fundctl demo

# fmt-check lists unformatted Go files, leaving out generated protobuf code.
fmt-check:
	@files=$$(find . -name '*.go' ! -name '*.pb.go' ! -name '*.pb.gw.go' \
		! -path './.git/*' ! -path './vendor/*' -print0 | xargs -0 -r gofmt -l); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi

# proto regenerates every *.pb.go, *_grpc.pb.go, *.pb.gw.go and
# *.swagger.json (Swagger 2.0) next to its .proto (outside third_party/),
# and the REST API's OpenAPI 3 document, gateway/api/fund/v1/openapi.yaml,
# from fund.proto and admin.proto together (protoc-gen-openapi writes one
# document per run; the DO NOT EDIT line is put on top of it here, as the
# plugin writes none). protoc comes from Debian's protobuf-compiler
# (installed when missing); the plugins are pinned here and built into .bin/
# from the Go module proxy.
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.0
GRPC_GATEWAY_VERSION ?= v2.33.0
GNOSTIC_VERSION ?= v0.7.1
FUND_API_DIR := gateway/api/fund/v1
proto:
	@command -v protoc >/dev/null 2>&1 || { sudo=; [ "$$(id -u)" -ne 0 ] && sudo=sudo; \
		$$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev; }
	GOBIN=$(CURDIR)/.bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(CURDIR)/.bin $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	GOBIN=$(CURDIR)/.bin $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@$(GRPC_GATEWAY_VERSION) \
		github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@$(GRPC_GATEWAY_VERSION)
	GOBIN=$(CURDIR)/.bin $(GO) install github.com/google/gnostic/cmd/protoc-gen-openapi@$(GNOSTIC_VERSION)
	@for f in $$(find . -name '*.proto' ! -path './third_party/*' ! -path './.git/*' | sort); do \
		echo "protoc $$f"; \
		PATH=$(CURDIR)/.bin:$$PATH protoc -I . -I third_party/proto -I /usr/include \
			--go_out=. --go_opt=paths=source_relative \
			--go-grpc_out=. --go-grpc_opt=paths=source_relative \
			--grpc-gateway_out=. --grpc-gateway_opt=paths=source_relative \
			--openapiv2_out=. --openapiv2_opt=allow_merge=false \
			$$f || exit 1; \
	done
	@echo "protoc $(FUND_API_DIR)/openapi.yaml"
	@PATH=$(CURDIR)/.bin:$$PATH protoc -I . -I third_party/proto -I /usr/include \
		--openapi_out=$(FUND_API_DIR) \
		--openapi_opt=naming=proto,enum_type=string,default_response=true,version=v1 \
		--openapi_opt='title=Fund platform API (FundService and AdminService)' \
		$(FUND_API_DIR)/fund.proto $(FUND_API_DIR)/admin.proto
	@{ echo '# Code generated by protoc-gen-openapi $(GNOSTIC_VERSION) from fund.proto and admin.proto (make proto). DO NOT EDIT.'; \
		cat $(FUND_API_DIR)/openapi.yaml; } > $(FUND_API_DIR)/openapi.yaml.tmp && \
		mv $(FUND_API_DIR)/openapi.yaml.tmp $(FUND_API_DIR)/openapi.yaml
