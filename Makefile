# Sluice — make targets. Only Go is needed; tools are pinned and fetched
# through the Go module proxy with `go run`.

GO          ?= go
BIN         := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME    ?= 30s
# Each fuzzing process of the noninterference test starts a whole
# deployment (the orchestrator, seven workers) before its first input:
# it needs minutes, not seconds, to explore.
NI_FUZZTIME ?= 5m
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell c=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || c=$$c-dirty; } && echo $$c)
LDFLAGS     := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build tools mcp-servers test test-loaded demo bench eval lint fuzz fmt check clean noninterference mutants e2e-model-server

all: build

build: $(BIN)/sluice $(BIN)/travel-site tools

$(BIN)/sluice: FORCE
	$(GO) build -ldflags '$(LDFLAGS)' -o $@ ./cmd/sluice

$(BIN)/travel-site: FORCE
	$(GO) build -o $@ ./examples/travel/site

# The example WASM tools, each built beside its manifest (run: wasm:NAME.wasm)
# as a reactor, with the standard Go toolchain.
WASM_TOOLS := $(patsubst examples/tools/%/main.go,%,$(wildcard examples/tools/*/main.go))

tools:
	@for t in $(WASM_TOOLS); do \
		echo "GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o examples/tools/$$t/$$t.wasm ./examples/tools/$$t"; \
		GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o examples/tools/$$t/$$t.wasm ./examples/tools/$$t || exit 1; \
	done

FORCE:

# Every test, e2e included, with the race detector. The web page is tested
# in a headless Chromium (Debian's chromium package): used where present,
# installed when make runs as root, and otherwise the browser test is
# skipped, saying why. Nothing is installed with sudo. CI sets
# SLUICE_REQUIRE_BROWSER=1, which makes a missing browser fail that test.
test:
	@if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's chromium for the web page test"; \
			{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; } \
				|| echo "make test: chromium could not be installed: the web page test will be skipped"; \
		else \
			echo "make test: chromium is not installed and make does not run as root, so it installs nothing:"; \
			echo "  the web page test will be skipped (apt-get install chromium to run it)"; \
		fi; \
	fi
	@$(MAKE) --no-print-directory mcp-servers
	$(GO) test -race -count=1 -timeout 14m ./...

# The MCP servers the mcp example and its e2e tests run (the reference
# filesystem, memory and everything servers from npm), at the versions pinned in
# examples/mcp/package-lock.json, into examples/mcp/node_modules (ignored by
# git). Without node and npm it says so, and those tests are skipped.
mcp-servers:
	@if command -v npm >/dev/null && command -v node >/dev/null; then \
		npm ci --prefix examples/mcp --no-audit --no-fund --loglevel=error; \
	else \
		echo "make test: node and npm are not installed: the MCP server tests will be skipped"; \
	fi

# No test's outcome may depend on the machine's speed: the whole suite
# (`make test`) three times in a row, with two busy CPU loops beside it
# for the whole time. The loops are bounded (LOADED_MAX seconds) and killed
# at the end; the target fails if any run fails.
LOADED_MAX ?= 3600
test-loaded:
	@timeout $(LOADED_MAX) sh -c 'while :; do :; done' & a=$$!; \
	timeout $(LOADED_MAX) sh -c 'while :; do :; done' & b=$$!; \
	trap 'kill $$a $$b 2>/dev/null' EXIT; trap 'exit 1' INT TERM HUP PIPE; \
	for i in 1 2 3; do \
		echo "test-loaded: run $$i of 3, beside two busy loops"; \
		$(MAKE) --no-print-directory test || { echo "test-loaded: run $$i failed"; exit 1; }; \
	done; \
	echo "test-loaded: 3 of 3 runs passed"

# The travel example end to end on the embedded defaults. Its fake airline
# site listens on 127.0.0.1:$(DEMO_PORT) (0: any free port).
DEMO_PORT ?= 8088
demo: build
	@DEMO_PORT=$(DEMO_PORT) examples/travel/demo.sh

# The evaluation (docs/evaluation.md): every suite, every user task as a
# fixed flow and as an agent step, and every pair of a user task and an
# injection task in every phrasing, through bin/sluice. Prints one line per
# suite and the total, and writes every run to $(EVAL_JSON). make test runs
# a fixed 1-in-10 sample of it (e2e TestEvaluationSample).
EVAL_JSON ?= .sluice/eval.json
eval: $(BIN)/sluice
	$(GO) run ./e2e/eval -sluice $(BIN)/sluice -json $(EVAL_JSON)

# The Go benchmarks the figures read, then the system figures beside their
# raw baselines (docs/performance.md): one line per figure, `name value unit`,
# one per comparison, `ratio NAME VALUE`, and the same as JSON in
# $(BENCH_STATE)/bench.json. It first prints how long it will take (from its
# plan, or the last run's times in bench.json), then a line as each group
# starts and ends. Its groups other than the 10,000 held runs take about 5 minutes on a
# quiet 2-core machine; the held runs, submitted through the API at about 300 a second,
# under 1 more. Every other Go
# benchmark runs with `go test -run '^$$' -bench . ./PKG`.
BENCH_STATE   ?= .sluice
BENCH_RUNS    ?= 3
BENCH_SCALE   ?= 10000
BENCH_GOCOUNT ?= 3
bench: $(BIN)/sluice
	@mkdir -p $(BENCH_STATE)
	$(GO) run ./e2e/bench -sluice $(BIN)/sluice -runs $(BENCH_RUNS) -state $(BENCH_STATE) -scale $(BENCH_SCALE) \
		-gocount $(BENCH_GOCOUNT) -gobench $(BENCH_STATE)/gobench.txt \
		-cpuprofile $(BENCH_STATE)/hop.pprof -memprofile $(BENCH_STATE)/hop-allocs.pprof

# The noninterference test alone: the committed corpus of attacker content
# (e2e/testdata/fuzz/FuzzNoninterference) over every scenario, each run
# beside its baseline; prints "noninterference: N scenarios, V violations".
# make test runs it too; make fuzz explores further.
noninterference:
	@$(GO) test -count=1 -run '^FuzzNoninterference$$' -v ./e2e > .noninterference.log 2>&1; s=$$?; \
		grep -E '^noninterference:|noninterference_test.go:[0-9]+:|^(--- )?FAIL' .noninterference.log; \
		[ $$s = 0 ] || tail -20 .noninterference.log; rm -f .noninterference.log; exit $$s

# The security mutation suite: every security check of
# testdata/mutants/mutants.yaml disabled in turn, in a scratch copy of the
# tree (never this checkout), and the tests named for it run; each must
# fail. Prints one line per mutant, then "mutants: C/N caught" and every
# survivor, and fails on a survivor, on a snippet that is no longer in its
# file exactly once, or on a named test that fails on the unchanged tree.
# Not in make test (which checks only that every mutant still applies:
# internal/cmd/mutants TestEveryMutantApplies); CI runs it after make test.
# 60 mutants took 7 to 14 min on 2 shared cores, two at once
# (MUTANTS_JOBS=2: 6m57s, 7m52s, 13m51s), and 25 min while other jobs loaded the
# machine.
MUTANTS_JOBS ?= 2
mutants:
	$(GO) run ./internal/cmd/mutants -j $(MUTANTS_JOBS)

# The opt-in test against a real model server, Ollama (docs/workers.md,
# "Against a real model server"); not in make test. It builds Ollama
# $(OLLAMA_VERSION) from the Go module proxy into $(OLLAMA_BIN) (cgo: a C and
# C++ compiler, Debian's nlohmann-json3-dev and libstb-dev, installed when
# make runs as root, and e2e/testdata/modelserver/include/miniaudio/miniaudio.h
# for the one header neither has), then runs e2e TestModelServerOllama with
# -tags modelserver: a GGUF model written by the test, whose weights fix its
# answers, served by Ollama, drives an agent step of the sluice binary through
# Ollama's OpenAI-compatible API. The first build of Ollama took 30 min on
# two shared cores (its llama.cpp and ggml are C++); later runs take a minute.
OLLAMA_VERSION ?= v0.17.4
OLLAMA_BIN     := $(BIN)/ollama-$(OLLAMA_VERSION)/ollama
e2e-model-server: $(OLLAMA_BIN)
	SLUICE_OLLAMA=$(abspath $(OLLAMA_BIN)) $(GO) test -tags modelserver -count=1 -timeout 20m -run '^TestModelServerOllama$$' -v ./e2e

$(OLLAMA_BIN):
	@if [ ! -f /usr/include/nlohmann/json.hpp ] || [ ! -f /usr/include/stb/stb_image.h ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian's nlohmann-json3-dev and libstb-dev to build Ollama"; \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nlohmann-json3-dev libstb-dev || exit 1; \
		else \
			echo "make e2e-model-server: building Ollama needs Debian's nlohmann-json3-dev and libstb-dev, and make installs nothing unless it runs as root:"; \
			echo "  apt-get install nlohmann-json3-dev libstb-dev"; exit 1; \
		fi; \
	fi
	GOBIN=$(abspath $(dir $(OLLAMA_BIN))) GOFLAGS=-mod=mod CGO_ENABLED=1 \
		CGO_CPPFLAGS="-I$(abspath e2e/testdata/modelserver/include)" \
		$(GO) install -ldflags '-X github.com/ollama/ollama/version.Version=$(OLLAMA_VERSION:v%=%)' github.com/ollama/ollama@$(OLLAMA_VERSION)

lint:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzCompile -fuzztime $(FUZZTIME) ./ifc/expr
	$(GO) test -run '^$$' -fuzz '^FuzzLoad$$' -fuzztime $(FUZZTIME) ./ifc/policy
	$(GO) test -run '^$$' -fuzz FuzzLoadCases -fuzztime $(FUZZTIME) ./ifc/policy
	$(GO) test -run '^$$' -fuzz FuzzFastPathsArePlain -fuzztime $(FUZZTIME) ./ifc/policy
	$(GO) test -run '^$$' -fuzz FuzzLabel -fuzztime $(FUZZTIME) ./ifc/expr
	$(GO) test -run '^$$' -fuzz FuzzLabelJSON -fuzztime $(FUZZTIME) ./ifc
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME) ./orchestrator/flow
	$(GO) test -run '^$$' -fuzz FuzzParseYAML -fuzztime $(FUZZTIME) ./schemas
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./worker/calendar
	$(GO) test -run '^$$' -fuzz FuzzInbox -fuzztime $(FUZZTIME) ./worker/email
	$(GO) test -run '^$$' -fuzz FuzzVerify -fuzztime $(FUZZTIME) ./orchestrator/audit
	$(GO) test -run '^$$' -fuzz FuzzString -fuzztime $(FUZZTIME) ./ifc/internal/jsonappend
	$(GO) test -run '^$$' -fuzz FuzzString -fuzztime $(FUZZTIME) ./internal/display
	$(GO) test -run '^$$' -fuzz FuzzCompile -fuzztime $(FUZZTIME) ./orchestrator/plan/interp
	$(GO) test -run '^$$' -fuzz FuzzRun -fuzztime $(FUZZTIME) ./orchestrator/plan/interp
	$(GO) test -run '^$$' -fuzz FuzzDecodeAsTheSDK -fuzztime $(FUZZTIME) ./worker/mcp
	$(GO) test -run '^$$' -fuzz FuzzDecodeResultAsTheSDK -fuzztime $(FUZZTIME) ./worker/mcp
	$(GO) test -run '^$$' -fuzz '^FuzzNoninterference$$' -fuzztime $(NI_FUZZTIME) -parallel 1 ./e2e

fmt:
	gofmt -w $$(git ls-files '*.go')

check: fmt lint test
	$(GO) mod tidy
	git diff --exit-code

clean:
	rm -rf $(BIN) .sluice examples/*/.sluice examples/travel/.demo examples/tools/*/*.wasm
