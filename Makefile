# termagent — build, test, cross-compile, demo, benchmarks.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE      ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(DATE)
TARGETS   := linux/amd64 linux/arm linux/arm64 android/arm64 windows/amd64
TESTFLAGS ?= -race -timeout 15m

.PHONY: all build test cross demo bench lint clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/agent ./cmd/agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/sim ./cmd/sim

# The README's test command: vet, then every test with the race detector.
test:
	$(GO) vet ./...
	$(GO) test $(TESTFLAGS) ./...

cross:
	@mkdir -p dist
	@for t in $(TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		out=dist/agent-$$os-$$arch$$ext; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out ./cmd/agent || exit 1; \
		printf '%-32s %8d bytes\n' $$out $$(stat -c %s $$out); \
	done

# A complete QR payment against the simulator on loopback.
demo: build
	./bin/sim demo

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./... | tee bench.out

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt:"; echo "$$out"; exit 1; }
	$(GO) vet ./...

clean:
	rm -rf bin dist bench.out
