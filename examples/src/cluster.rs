//! The whole recipe started in one process: certificates, the central user store, two
//! nodes, and the balancer built from the same TOML file `--config` takes.
//!
//! Why the balancer is built from a file even here: the file the example writes is the
//! reproduction of the recipe's Apache virtual host, and a user fronting real nodes starts
//! from it; building from it in every run keeps it working.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tower_balancer::health::HealthEvent;
use tower_balancer::registry::{Health, Registry};
use tower_balancer_proxy::config::{BindError, ConfigError, ConfigFile};
use tower_balancer_proxy::serve::server_tls_from_pem;

use crate::certs::{self, CertError, CertFiles};
use crate::node::{Node, NodeConfig};
use crate::userstore::{RandomError, UserStore};

/// Where everything listens. [`ClusterOptions::recipe`] gives the recipe's ports;
/// [`ClusterOptions::ephemeral`] lets the OS choose (for tests).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Where certificates are made or kept.
    pub certs: PathBuf,
    /// The balancer's TLS front (`wso2.com`).
    pub listen: SocketAddr,
    /// The balancer-manager (loopback only).
    pub admin: SocketAddr,
    /// node1's HTTPS and HTTP addresses (9443, 9763).
    pub node1: (SocketAddr, SocketAddr),
    /// node2's, offset 1 (9444, 9764).
    pub node2: (SocketAddr, SocketAddr),
    /// How often members are probed.
    pub probe_interval: Duration,
    /// Build the balancer from the recipe written as Apache would have it
    /// (`examples/is_cluster/httpd-wso2.conf`), through `import-apache`, instead of from
    /// the TOML file written directly.
    pub from_apache: bool,
}

impl ClusterOptions {
    /// The recipe's ports, the front on 8443 and the manager on 127.0.0.1:9000.
    #[must_use]
    pub fn recipe(certs: PathBuf) -> Self {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            certs,
            listen: at(8443),
            admin: at(9000),
            node1: (at(9443), at(9763)),
            node2: (at(9444), at(9764)),
            probe_interval: Duration::from_secs(1),
            from_apache: false,
        }
    }

    /// Every port chosen by the OS.
    #[must_use]
    pub fn ephemeral(certs: PathBuf) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            certs,
            listen: any,
            admin: any,
            node1: (any, any),
            node2: (any, any),
            probe_interval: Duration::from_millis(200),
            from_apache: false,
        }
    }
}

/// Starting the cluster failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Certificates.
    #[error(transparent)]
    Certs(#[from] CertError),
    /// A node's port.
    #[error("{0} (stop the program using it, or choose other ports)")]
    Node(io::Error),
    /// The generated configuration was refused (a bug in the example if it happens).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The balancer's ports.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The configuration file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The user store.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The recipe's Apache configuration could not be imported.
    #[error("importing the recipe's Apache configuration: {0}")]
    Import(#[from] tower_balancer_proxy::config::ImportError),
    /// A certificate was refused.
    #[error("the certificate for {host} was refused: {why} (delete the certificate directory to make new ones)")]
    Tls {
        /// Whose.
        host: &'static str,
        /// Why.
        why: String,
    },
    /// Members did not pass their health checks in time.
    #[error("no healthy member after {0:?}: the nodes did not answer their health checks")]
    NeverHealthy(Duration),
}

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    /// node1 and node2.
    pub nodes: [Node; 2],
    /// The central user store (outlives both nodes).
    pub users: UserStore,
    /// The certificates.
    pub certs: CertFiles,
    /// Whether the certificates were made in this run.
    pub certs_made: bool,
    /// The configuration file the balancer was built from.
    pub config_file: PathBuf,
    /// The balancer's front address.
    pub front: SocketAddr,
    /// The manager's address.
    pub manager: Option<SocketAddr>,
    /// The balancer's members.
    pub registry: Registry,
    /// The manager's nonce (for scripted actions).
    pub nonce: String,
    events: Option<broadcast::Receiver<HealthEvent>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), BindError>>,
}

impl Cluster {
    /// Starts everything, telling `progress` each step.
    ///
    /// # Errors
    /// [`ClusterError`], which says what to do.
    pub async fn start(
        options: &ClusterOptions,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Self, ClusterError> {
        let (certs, certs_made) = certs::ensure(&options.certs)?;
        progress(&format!(
            "certificates for wso2.com, abc.com, xyz.com and their CA {} {}",
            if certs_made { "made in" } else { "kept from" },
            certs.dir().display()
        ));

        let users = UserStore::with_default_admin()?;
        progress("central user store ready (user admin, password admin)");

        let mut nodes = [
            node(&certs, "node1", "abc.com", options.node1, &users)?,
            node(&certs, "node2", "xyz.com", options.node2, &users)?,
        ];
        for n in &mut nodes {
            n.start().await.map_err(ClusterError::Node)?;
            if let Some((https, http)) = n.addrs() {
                progress(&format!(
                    "{} started: https {https}, http {http}",
                    n.route()
                ));
            }
        }

        let config_file = certs.dir().join("is_cluster.toml");
        let text = if options.from_apache {
            progress("the recipe's Apache virtual host imported (tower-balancer import-apache)");
            crate::apache_recipe::import_recipe(options, &nodes, &certs)?
        } else {
            recipe_toml(options, &nodes, &certs)
        };
        std::fs::write(&config_file, text).map_err(|source| ClusterError::Write {
            path: config_file.clone(),
            source,
        })?;
        let balancer = ConfigFile::from_file(&config_file)?.build()?;
        let registry = balancer.registry().clone();
        let bound = balancer.bind().await?;
        let front = bound.local_addr().map_err(|source| BindError::Listen {
            what: "the balancer",
            addr: options.listen,
            source,
        })?;
        let manager = bound.manager_addr();
        let nonce = bound.manager().nonce().to_owned();
        let events = bound.health_events();
        progress(&format!("balancer for wso2.com listening on {front} (TLS)"));
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(bound.serve(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        Ok(Self {
            nodes,
            users,
            certs,
            certs_made,
            config_file,
            front,
            manager,
            registry,
            nonce,
            events,
            stop,
            task,
        })
    }

    /// Health verdicts as the probes reach them.
    #[must_use]
    pub fn health_events(&self) -> Option<broadcast::Receiver<HealthEvent>> {
        self.events.as_ref().map(broadcast::Receiver::resubscribe)
    }

    /// Waits until every member named in `routes` is healthy, or `limit` passes.
    ///
    /// # Errors
    /// [`ClusterError::NeverHealthy`] after `limit`.
    pub async fn wait_healthy(&self, routes: &[&str], limit: Duration) -> Result<(), ClusterError> {
        wait_for(&self.registry, limit, |snap| {
            routes
                .iter()
                .all(|r| snap.get(r).is_some_and(|m| m.health() == Health::Healthy))
        })
        .await
        .map_err(|()| ClusterError::NeverHealthy(limit))
    }

    /// Stops the balancer (in-flight requests finish) and both nodes.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
        for n in &mut self.nodes {
            n.stop().await;
        }
    }
}

/// Waits until `done` holds for the registry's snapshot, or `limit` passes.
///
/// # Errors
/// `()` after `limit`.
pub async fn wait_for(
    registry: &Registry,
    limit: Duration,
    done: impl Fn(&tower_balancer::registry::Snapshot) -> bool,
) -> Result<(), ()> {
    let mut changes = registry.subscribe();
    tokio::time::timeout(limit, async {
        loop {
            changes.mark_seen();
            if done(&registry.snapshot()) {
                return;
            }
            if changes.changed().await.is_err() {
                // the registry is gone: nothing will change again
                std::future::pending::<()>().await;
            }
        }
    })
    .await
    .map_err(|_| ())
}

fn node(
    certs: &CertFiles,
    route: &str,
    host: &'static str,
    addrs: (SocketAddr, SocketAddr),
    users: &UserStore,
) -> Result<Node, ClusterError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| ClusterError::Tls {
            host,
            why: format!("{}: {e}", p.display()),
        })
    };
    let tls =
        server_tls_from_pem(&read(&certs.cert(host))?, &read(&certs.key(host))?).map_err(|e| {
            ClusterError::Tls {
                host,
                why: e.to_string(),
            }
        })?;
    let mut tls = Arc::unwrap_or_clone(tls);
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Node::new(NodeConfig {
        route: route.to_owned(),
        host: host.to_owned(),
        https: addrs.0,
        http: addrs.1,
        tls: Arc::new(tls),
        users: users.clone(),
    }))
}

/// The recipe's Apache virtual host as this project's TOML file.
fn recipe_toml(options: &ClusterOptions, nodes: &[Node; 2], certs: &CertFiles) -> String {
    let member = |n: &Node, host: &str| {
        let https = n.addrs().map_or(0, |a| a.0.port());
        format!(
            "[[balancer.member]]          # BalancerMember https://{host}:{https} route={route}\n\
             url = \"https://{host}:{https}\"\n\
             route = \"{route}\"\n\
             loadfactor = 1\n\
             resolve = [\"127.0.0.1:{https}\"]  # /etc/hosts: 127.0.0.1 {host}\n",
            route = n.route(),
        )
    };
    format!(
        "# The recipe's Apache virtual host for wso2.com, as tower-balancer configuration.\n\
         # Written by `cargo run --example is_cluster`; run it again with\n\
         #   cargo run --example is_cluster -- --config {file}\n\
         # after pointing the members at real nodes.\n\
         \n\
         [server]                    # <VirtualHost *:443> with SSLEngine on\n\
         listen = \"{listen}\"\n\
         server_name = \"wso2.com\"\n\
         certificate = \"{cert}\"     # SSLCertificateFile\n\
         key = \"{key}\"              # SSLCertificateKeyFile\n\
         \n\
         [balancer]                  # <Proxy balancer://wso2isbalancer>\n\
         name = \"wso2isbalancer\"\n\
         lbmethod = \"byrequests\"\n\
         stickysession = \"JSESSIONID|jsessionid\"\n\
         cookie = \"ROUTEID\"\n\
         nofailover = false\n\
         maxattempts = 1\n\
         timeout = \"30s\"\n\
         proxy_pass_reverse = true   # ProxyPassReverse / balancer://wso2isbalancer/\n\
         preserve_host = false       # ProxyPreserveHost Off\n\
         trust_roots = [\"{ca}\"]     # SSLProxyCACertificateFile\n\
         \n\
         {m1}\n{m2}\n\
         [balancer.health]           # mod_proxy_hcheck\n\
         method = \"GET\"\n\
         uri = \"/carbon/admin/login.jsp\"\n\
         interval = \"{interval}ms\"\n\
         timeout = \"1s\"\n\
         passes = 2\n\
         fails = 1\n\
         body_contains = \"Management Console\"\n\
         \n\
         [manager]                   # <Location /balancer-manager>, loopback only\n\
         listen = \"{admin}\"\n",
        file = certs.dir().join("is_cluster.toml").display(),
        listen = options.listen,
        cert = certs.cert("wso2.com").display(),
        key = certs.key("wso2.com").display(),
        ca = certs.ca().display(),
        m1 = member(&nodes[0], "abc.com"),
        m2 = member(&nodes[1], "xyz.com"),
        interval = options.probe_interval.as_millis(),
        admin = options.admin,
    )
}
