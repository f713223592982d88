# termagent — build, test, cross-compile, demo, benchmarks.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE      ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.buildDate=$(DATE)
TARGETS   := linux/amd64 linux/arm linux/arm64 android/arm64 windows/amd64
TESTFLAGS ?= -race -timeout 15m
# The issue's budget for the stripped linux/arm64 agent (15 MiB).
MAX_ARM64_BYTES := 15728640

.PHONY: fleet all build test cross demo bench lint clean crash

all: build

build:
	@echo "building bin/agent and bin/sim (the first build takes about a minute)..."
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/agent ./cmd/agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/sim ./cmd/sim

# The README's test command: vet, then every test with the race detector,
# ending with the list of tests skipped for a missing tool and the command
# that installs it (cmd/testreport runs go test -json).
test:
	$(GO) vet ./...
	GO=$(GO) $(GO) run ./cmd/testreport $(TESTFLAGS) ./...

# Static (CGO_ENABLED=0), stripped (-s -w), reproducible-path (-trimpath) agents
# for the terminals' and POS hosts' platforms, with their sizes; fails when the
# linux/arm64 agent outgrows its budget.
cross:
	@mkdir -p dist
	@for t in $(TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		out=dist/agent-$$os-$$arch$$ext; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $$out ./cmd/agent || exit 1; \
		size=$$(stat -c %s $$out); \
		printf '%-32s %9d bytes  %5.1f MiB stripped\n' $$out $$size $$(awk "BEGIN{print $$size/1048576}"); \
		if [ $$t = linux/arm64 ] && [ $$size -gt $(MAX_ARM64_BYTES) ]; then \
			echo "cross: $$out is $$size bytes, over the $(MAX_ARM64_BYTES)-byte budget" >&2; exit 1; \
		fi; \
	done

# A complete QR payment against the simulator on loopback.
demo: build
	./bin/sim demo

# Every package's benchmarks (the long store ones included), binary sizes, the
# idle footprint and start-to-ready time of a running agent, written to
# BENCHMARKS.md with the machine they ran on (about 15 minutes on 2 cores).
bench:
	$(GO) run ./cmd/benchreport -o BENCHMARKS.md

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt:"; echo "$$out"; exit 1; }
	$(GO) vet ./...

clean:
	rm -rf bin dist

# 1,000 simulated terminals against one simulated PPaaS: embedded broker, then Mosquitto.
fleet: build
	./bin/sim fleet -n 1000 -payments 3 -concurrency 50
	./bin/sim fleet -n 1000 -payments 3 -concurrency 50 -mosquitto

# The whole crash matrix: the agent binary built with -tags failpoints is killed
# (SIGKILL) at each named durable-write boundary of each payment scenario,
# restarted, and checked for money safety (make test runs a subset).
crash:
	TERMAGENT_CRASH_FULL=1 $(GO) test -count=1 -timeout 30m -run 'TestCrashMatrix|TestReleaseBuildHasNoFailpoints' -v ./cmd/agent | grep -E 'crash matrix|^ +[a-z0-9 ]|FAIL|violation|^ok|^---'
