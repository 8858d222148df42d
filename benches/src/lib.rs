//! Criterion benches for tower-balancer live in `benches/`; see the README for the figures.
