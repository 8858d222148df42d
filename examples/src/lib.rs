//! The pieces of `cargo run --example is_cluster`: the recipe for a two-node WSO2 Identity
//! Server cluster behind Apache's `mod_proxy_balancer`, reproduced in one process.
//!
//! Why a library and not only an example: the demo is also an integration test
//! (`tests/is_cluster.rs`), which drives these same pieces in-process.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_balancer_examples::cluster::{Cluster, ClusterOptions};
//!
//! let options = ClusterOptions::ephemeral(std::env::temp_dir().join("is_cluster-certs"));
//! let mut cluster = Cluster::start(&options, &mut |step| println!("{step}")).await?;
//! cluster.wait_healthy(&["node1", "node2"], std::time::Duration::from_secs(10)).await?;
//! let report = tower_balancer_examples::demo::run(&mut cluster, 10, &mut |line| println!("{line}")).await?;
//! assert_eq!(report.client_errors, 0);
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```

pub mod apache_recipe;
pub mod certs;
pub mod client;
pub mod cluster;
pub mod demo;
pub mod node;
pub mod status;
pub mod userstore;

/// The project README's Rust quick start, compiled as a doctest so it cannot rot (the
/// workspace's README is not part of a published crate, so this unpublished one checks it).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
