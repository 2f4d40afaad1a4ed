# Build, test and demo entry points. CI runs .ci/run, which calls these.
GO ?= go

.PHONY: all build test demo fmt-check postgres

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

test: postgres
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m ./...

demo: postgres
	$(GO) run ./cmd/fundctl bench ledger --duration 10s --pgbench

# fmt-check lists unformatted Go files, leaving out generated protobuf code.
fmt-check:
	@files=$$(find . -name '*.go' ! -name '*.pb.go' ! -name '*.pb.gw.go' \
		! -path './.git/*' ! -path './vendor/*' -print0 | xargs -0 -r gofmt -l); \
	if [ -n "$$files" ]; then echo "gofmt needed on:"; echo "$$files"; exit 1; fi
