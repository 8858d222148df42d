//! The recipe written as Apache would have it, and imported: the path an operator takes
//! from an Apache front to this one (`tower-balancer import-apache`).
//!
//! `examples/is_cluster/httpd-wso2.conf` is the recipe's virtual host with the recipe's
//! ports and relative certificate paths; a run puts in its own ports and paths, imports
//! it, and builds the balancer from what the importer wrote.

use std::net::{IpAddr, Ipv4Addr};

use tower_balancer_proxy::config::{import_apache, ImportError, ImportOptions};

use crate::certs::CertFiles;
use crate::cluster::ClusterOptions;
use crate::node::Node;

/// The recipe's Apache virtual host, as shipped.
pub const RECIPE_HTTPD_CONF: &str = include_str!("../is_cluster/httpd-wso2.conf");

/// The recipe's virtual host with this run's addresses and certificate files.
#[must_use]
pub fn recipe_httpd_conf(options: &ClusterOptions, nodes: &[Node; 2], certs: &CertFiles) -> String {
    let https = |n: &Node| n.addrs().map_or(0, |a| a.0.port());
    let path = |p: std::path::PathBuf| p.display().to_string();
    RECIPE_HTTPD_CONF
        .replace("Listen 8443", &format!("Listen {}", options.listen.port()))
        .replace("127.0.0.1:8443", &options.listen.to_string())
        .replace("abc.com:9443", &format!("abc.com:{}", https(&nodes[0])))
        .replace("xyz.com:9444", &format!("xyz.com:{}", https(&nodes[1])))
        .replace("certs/wso2.com.crt", &path(certs.cert("wso2.com")))
        .replace("certs/wso2.com.key", &path(certs.key("wso2.com")))
        .replace("certs/ca.crt", &path(certs.ca()))
}

/// Writes this run's Apache file beside the certificates and imports it: the TOML text,
/// the nodes' host names resolved to loopback (what `/etc/hosts` said for Apache) and the
/// manager on `options.admin`.
///
/// # Errors
/// [`ImportError`] when the file cannot be read or names no balancer.
pub fn import_recipe(
    options: &ClusterOptions,
    nodes: &[Node; 2],
    certs: &CertFiles,
) -> Result<String, ImportError> {
    let conf = certs.dir().join("is_cluster.conf");
    std::fs::write(&conf, recipe_httpd_conf(options, nodes, certs)).map_err(|e| {
        ImportError::Syntax(tower_balancer_proxy::config::ApacheSyntaxError::Read(
            conf.display().to_string(),
            e.to_string(),
        ))
    })?;
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let import_options = ImportOptions::new()
        .resolve("abc.com", loopback)
        .resolve("xyz.com", loopback)
        .manager(options.admin);
    Ok(import_apache(&conf, &import_options)?.toml)
}
