# Entry points. `make demo` and `make test` set up everything (Debian packages through
# scripts/setup.sh), build, and run. Build folders: build/ (release, gcc) and build-asan/
# (clang, ASan+UBSan, libFuzzer targets).
BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 5
FUZZ_LONG_SECONDS ?= 600
# ccache hashes paths relative to the checkout, so fresh clones in other folders reuse its cache.
export CCACHE_BASEDIR := $(CURDIR)

.PHONY: all setup build build-asan test test-release test-asan fuzz fuzz-long demo bench format clean \
  check-neon check-openai-client check-note-go check-cyclonedx check-sarif check-postgres \
  check-kubernetes

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: setup $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/build.ninja:
	CC=clang CXX=clang++ cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DAIRLOCK_SANITIZE=ON -DAIRLOCK_FUZZ=ON -DAIRLOCK_BENCH=OFF

build-asan: setup $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

fuzz: build-asan
	bash scripts/run-fuzzers.sh $(ASAN_BUILD) $(FUZZ_SECONDS)

# The whole suite: release tests, sanitizer tests, and a short run of every fuzz target.
test: test-release test-asan fuzz

# Long fuzzing campaign (FUZZ_LONG_SECONDS per target, default 10 minutes).
fuzz-long: build-asan
	bash scripts/run-fuzzers.sh $(ASAN_BUILD) $(FUZZ_LONG_SECONDS)

# Optional: the official `openai` npm client against a real `airlock serve` (not part of `make
# test`: the package is not in Debian, and setup installs from apt only). Fetches the package from
# the npm registry into $(BUILD)/npm. Three tests, all must pass (a skip fails): plain HTTP with a
# key, HTTPS with a throwaway certificate (NODE_EXTRA_CA_CERTS), and keyless loopback.
check-openai-client: build
	npm install --no-save --prefix $(BUILD)/npm openai
	cd $(BUILD)/tests && ./server_test --gtest_filter='GatewayTest.OfficialOpenAiNodeClient*' \
	  | tee openai-client.log
	@for t in OfficialOpenAiNodeClient OfficialOpenAiNodeClientOverHttps \
	    OfficialOpenAiNodeClientKeylessLoopback; do \
	  grep -q "\[       OK \] GatewayTest.$$t " $(BUILD)/tests/openai-client.log \
	    || { echo "check-openai-client: GatewayTest.$$t did not pass (a skip fails)"; exit 1; }; \
	done

# Every BOM `airlock assess` writes (a file model with probe metrics, a folder model) validated
# against the official CycloneDX 1.5 JSON schema, as published in @cyclonedx/cyclonedx-library,
# with Ajv (not part of `make test`: neither is packaged in Debian). Fetches the packages from the
# npm registry into $(BUILD)/npm-cyclonedx. A skip fails.
check-cyclonedx: build
	npm install --no-save --prefix $(BUILD)/npm-cyclonedx @cyclonedx/cyclonedx-library@10.3.0 \
	  ajv@8.20.0 ajv-formats@3.0.1 ajv-formats-draft2019@1.6.1
	cd $(BUILD)/tests && ./assess_test \
	  --gtest_filter=CycloneDxSchema.FileAndFolderBomsValidateAgainstTheOfficialSchema \
	  | tee /dev/stderr \
	  | grep -q '\[       OK \] CycloneDxSchema.FileAndFolderBomsValidateAgainstTheOfficialSchema'

# Optional: `airlock scan --format sarif` output (demo set and scanner fixtures) validated by
# Microsoft's SARIF multitool with GitHub code scanning's rules (`validate --rule-kind
# "Gh;Sarif"`); the tool comes from npm into $(BUILD)/npm, so it is not part of `make test`.
# Zero errors passes; a skip (no tool, no fixtures) fails.
check-sarif: build
	bash scripts/check-sarif.sh $(BUILD)

# Audit checkpoints verified by Go's golang.org/x/mod/sumdb/note (installs golang-go and
# golang-golang-x-mod-dev from Debian; not part of `make test`). A skip fails.
check-note-go: build
	bash scripts/setup.sh --with-go
	cd $(BUILD)/tests && ./audit_test --gtest_filter=GoNote.SumdbNoteVerifiesAnAirlockCheckpoint \
	  | tee /dev/stderr | grep -q '\[       OK \] GoNote.SumdbNoteVerifiesAnAirlockCheckpoint'

# The PostgreSQL key store and three gateway replicas on one database, against a real PostgreSQL
# server each run starts (initdb + pg_ctl from the Debian postgresql package, installed by setup;
# as root it runs as nobody). `make test` runs the same tests, skipping them where the server
# binaries are absent; here a skip fails.
check-postgres: build
	cd $(BUILD)/tests && { ./store_test > store-postgres.log 2>&1; rc=$$?; cat store-postgres.log; \
	  test $$rc -eq 0 || exit 1; }
	@if grep -q '\[  SKIPPED \]' $(BUILD)/tests/store-postgres.log; then \
	  echo "check-postgres: a PostgreSQL test was skipped (a skip fails)"; exit 1; fi

# deploy/kubernetes/ validated against the Kubernetes OpenAPI schema (the npm package
# kubernetes-models, fetched into $(BUILD)/npm-k8s, so not part of `make test`; `kubectl
# --dry-run=client` needs a cluster to fetch the schema from), then the invariants deploy_test
# checks in `make test` (probes, flags, port, metric, drain grace, secrets as files).
check-kubernetes: build
	npm install --no-save --prefix $(BUILD)/npm-k8s kubernetes-models@5.1.0 js-yaml@4.1.0
	node scripts/check-kubernetes.mjs $(CURDIR)/$(BUILD)/npm-k8s/node_modules deploy/kubernetes
	python3 scripts/check-manifests.py deploy/kubernetes $(BUILD)/airlock .

demo: build
	@bash scripts/demo.sh $(BUILD)

bench: build
	@bash bench/run.sh $(BUILD)

# ARM NEON kernels vs the scalar reference, cross-compiled and run under qemu (not part of
# `make test`; installs the aarch64 toolchain and qemu-user with apt on first use).
check-neon:
	@bash scripts/check-neon.sh

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
