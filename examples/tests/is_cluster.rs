//! The demo as a test: the recipe's cluster on loopback ports the OS picks, with generated
//! certificates, walked end to end. Every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tower_balancer_examples::cluster::{Cluster, ClusterError, ClusterOptions};
use tower_balancer_examples::demo;

fn certs_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("is-cluster-test-{name}-{}", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_passes() {
    demo_passes("demo", false).await;
}

/// N: the recipe's Apache virtual host (`examples/is_cluster/httpd-wso2.conf`), imported by
/// `import-apache`, makes a balancer that passes the same demo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_passes_on_the_balancer_imported_from_apache() {
    demo_passes("apache", true).await;
}

async fn demo_passes(name: &str, from_apache: bool) {
    let mut options = ClusterOptions::ephemeral(certs_dir(name));
    options.from_apache = from_apache;
    let mut steps = Vec::new();
    let mut cluster = Cluster::start(&options, &mut |s| steps.push(s.to_owned()))
        .await
        .unwrap();
    assert!(
        steps.iter().any(|s| s.contains("node1 started")),
        "{steps:?}"
    );
    cluster
        .wait_healthy(&["node1", "node2"], Duration::from_secs(20))
        .await
        .unwrap();
    let mut transcript = Vec::new();
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        demo::run(&mut cluster, 8, &mut |l| transcript.push(l.to_owned())),
    )
    .await
    .expect("the demo finished in time")
    .unwrap_or_else(|e| panic!("{e}\n{}", transcript.join("\n")));
    assert_eq!(report.client_errors, 0);
    assert_ne!(report.first_node, report.other_node);
    assert!(report.requests > 30, "{report:?}");
    assert!(transcript.iter().any(|l| l.contains("readmitted")));
    // both nodes served through the balancer
    assert!(cluster.nodes.iter().all(|n| n.served() > 0));
    if from_apache {
        let text = std::fs::read_to_string(&cluster.config_file).unwrap();
        assert!(text.contains("imported from"), "{text}");
        assert!(text.contains("cookie = \"ROUTEID\""), "{text}");
        assert!(
            text.contains("body_contains = \"Management Console\""),
            "{text}"
        );
        // the file the importer wrote passes --check as it is
        tower_balancer_proxy::config::ConfigFile::check_file(&cluster.config_file)
            .unwrap_or_else(|e| panic!("{e:?}\n{text}"));
    }
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(certs_dir(name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_reported_with_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut options = ClusterOptions::ephemeral(certs_dir("port"));
    options.listen = taken.local_addr().unwrap();
    let err = Cluster::start(&options, &mut |_| {}).await.unwrap_err();
    assert!(matches!(err, ClusterError::Bind(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&options.listen.to_string()), "{text}");
    assert!(text.contains("another program uses this port"), "{text}");

    let mut options = ClusterOptions::ephemeral(certs_dir("port"));
    options.node2.0 = taken.local_addr().unwrap();
    let err = Cluster::start(&options, &mut |_| {}).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("node2 cannot listen"), "{text}");
    assert!(text.contains("choose other ports"), "{text}");
    let _ = std::fs::remove_dir_all(certs_dir("port"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_written_config_is_the_recipe() {
    let options = ClusterOptions::ephemeral(certs_dir("config"));
    let cluster = Cluster::start(&options, &mut |_| {}).await.unwrap();
    let text = std::fs::read_to_string(&cluster.config_file).unwrap();
    for line in [
        "server_name = \"wso2.com\"",
        "stickysession = \"JSESSIONID|jsessionid\"",
        "route = \"node1\"",
        "route = \"node2\"",
        "url = \"https://abc.com:",
        "url = \"https://xyz.com:",
        "uri = \"/carbon/admin/login.jsp\"",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    let parsed = tower_balancer_proxy::config::ConfigFile::from_file(&cluster.config_file).unwrap();
    assert_eq!(parsed.file().balancer.members.len(), 2);
    cluster.shutdown().await;
    let _ = std::fs::remove_dir_all(certs_dir("config"));
}
