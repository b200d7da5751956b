//! Benchmarks for the xbzrle codec (see `benches/`).
