# The two commands of the README. Each installs what it needs first (.ci/setup.sh).
IMAGE ?= flowrec:dev
.PHONY: image manifests demo test bench bench-ebpf bench-ebpf-memory bench-hubble soak-hubble bench-stages heap-profile bench-outage bench-query bench-fleet bench-cluster oracle oracle-store fuzz

demo:            ## import the sample capture and answer "what was dropped, by which policy?"
	bash .ci/demo.sh

test:            ## the whole test suite (what CI runs)
	bash .ci/run

bench:           ## import benchmark: flowrec vs DuckDB on 1M generated flows
	bash .ci/setup.sh
	cargo build --release -p flowrec -p flow-benches
	target/release/import-bench --flows 1000000

bench-ebpf:      ## cost of the tc programs: ns/packet, TCP throughput with/without (root)
	bash benches/ebpf-cost.sh

bench-ebpf-memory: ## peak RSS and CPU of the eBPF source draining a full flow map every 10 s (root)
	bash .ci/setup.sh
	cargo build --release -p flowrec -p flowsql
	bash benches/ebpf-memory.sh 12

oracle:          ## durability oracle, long form: 100 SIGKILL cycles of a followed file (FLOWREC_ORACLE_SEED=N reproduces one)
	bash .ci/setup.sh
	cargo build --workspace
	FLOWREC_ORACLE_CYCLES=100 cargo test -p flowsql --test e2e -- --nocapture followed_file_sigkilled

bench-query:     ## flowsql vs DuckDB: the forensic query suite on 10M flows over 24 h, and window scaling 1 day vs 30 days
	bash .ci/setup.sh
	command -v duckdb >/dev/null || python3 -m pip install --quiet --root-user-action=ignore duckdb-cli
	cargo build --release -p flowrec -p flowsql -p flow-benches
	target/release/query-bench --flows 10000000 --hours 24
	target/release/query-bench --scaling

bench-cluster:   ## flowsql local vs a Ballista cluster (scheduler + 2 executors on loopback): the query suite on 10M flows
	bash .ci/setup.sh
	cargo build --release -p flowrec -p flowsql -p flow-benches
	target/release/query-bench --flows 10000000 --hours 24 --cluster 2 --runs 3

bench-fleet:     ## a fleet-shaped store (50 nodes x 24 h x a file per 5 min) before/after flowstore compact, vs DuckDB; 30-day regressions from rollups
	bash .ci/setup.sh
	command -v duckdb >/dev/null || python3 -m pip install --quiet --root-user-action=ignore duckdb-cli
	cargo build --release -p flowrec -p flowsql -p flow-benches
	target/release/fleet-bench --flows 10000000 --hours 24 --nodes 50
	target/release/fleet-bench --flows 10000000 --hours 24 --nodes 50 --newest-hour --runs 7
	target/release/fleet-bench --rollup-month

fuzz:            ## every fuzz target for 10 minutes (FUZZ_SECONDS=N to change; nightly toolchain, cargo-fuzz installed if missing)
	bash .ci/setup.sh
	bash .ci/fuzz.sh $${FUZZ_SECONDS:-600}

oracle-store:    ## compaction oracle, long form: 100 import rounds per writer, compactor SIGKILLed throughout (FLOWSTORE_ORACLE_SEED=N reproduces one)
	bash .ci/setup.sh
	cargo build --workspace
	FLOWSTORE_ORACLE_ROUNDS=100 cargo test -p flowsql --test e2e -- --nocapture compaction_killed

bench-hubble:    ## live Hubble recording: flows/s from test-hubble-server into the store (1M flows)
	bash .ci/setup.sh
	cargo build --release -p flowrec -p flow-benches
	cargo build --workspace
	bash benches/hubble-bench.sh 1000000

soak-hubble:     ## 3 minutes of live Hubble at 100k flows/s: fails if peak RSS > 200 MiB or a flow is missing
	bash .ci/setup.sh
	cargo build --release -p flowrec -p flow-benches
	cargo build --workspace
	RATE=100000 MAX_RSS_MIB=200 bash benches/hubble-bench.sh 18000000

bench-stages:    ## CPU of each stage of a live Hubble flow (decode, spool write/read, Parquet), one thread, 1M flows
	cargo build --release -p flow-benches
	target/release/hubble-stages --flows 1000000 --runs 5

heap-profile:    ## where the recorder's memory goes: massif heap profile of a live Hubble recording (300k flows, valgrind)
	bash .ci/setup.sh
	bash benches/heap-profile.sh 300000

bench-outage:    ## a spool left by a store outage (5M flows, ~1.3 GiB), shipped: memory and speed of both phases
	bash .ci/setup.sh
	cargo build --release -p flowrec -p flow-benches
	cargo build --workspace
	bash benches/spool-outage.sh 5000000

image:           ## the container image (Containerfile) with docker, podman or buildah: IMAGE=REGISTRY/flowrec:TAG
	builder=$$(command -v docker || command -v podman || command -v buildah) && \
	  "$$builder" build -f Containerfile --build-arg FLOW_BUILD_GIT=$$(git rev-parse --short=12 HEAD) -t $(IMAGE) .

manifests:       ## render the manifests of both overlays into target/manifests (what kubectl apply -k applies)
	mkdir -p target/manifests
	kubectl kustomize deploy/overlays/hubble > target/manifests/hubble.yaml
	kubectl kustomize deploy/overlays/ebpf > target/manifests/ebpf.yaml
	@echo "target/manifests/hubble.yaml target/manifests/ebpf.yaml"
