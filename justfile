# Recipes for numashm. A fresh machine has no `just`: the README's two commands
# (scripts/demo, scripts/test) need nothing but the Rust toolchain and apt.

# every test, as CI runs it
test:
    bash scripts/test

# the README's demo
demo:
    bash scripts/demo

# criterion benchmarks (careful), then the quick side-by-side report
bench:
    cargo bench -p numashm-benches
    cargo run --release -p numashm-cli -- bench

# loom models only
loom:
    RUSTFLAGS="--cfg numashm_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p numashm-loom-tests --release --target-dir target/loom

# miri on the heap-memory versions
miri:
    MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p numashm-varslot -p numashm-ring --lib

# placement tests (region and pools) in the project's own QEMU guest with N NUMA nodes
numa-guest nodes="2":
    for pkg in numashm-region numashm; do \
      bin=$(cargo test -p $pkg --test numa --no-run --message-format=json 2>/dev/null | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1) && \
      bash scripts/numa-guest --nodes {{nodes}} --mem-per-node 256 --append "hugepages=16" --env NUMASHM_EXPECT_NODES={{nodes}} -- "$bin" --test-threads=1 || exit 1; \
    done

# fuzz every target for SECONDS each
fuzz seconds="60":
    bash scripts/fuzz {{seconds}}
