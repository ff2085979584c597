//! Criterion benchmarks of the ringws protocol core live in `benches/`; see README.md.
