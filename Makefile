# The two commands of the README. Each installs what it needs first (.ci/setup.sh).
.PHONY: demo test bench bench-ebpf

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
