//! `--demo`: the recipe's last step, walked by a script that checks every expectation.
//!
//! Log in through the balancer, stay on one node, lose that node, carry on on the other
//! (no client errors; a fresh login, since sessions are node-local), bring the node back,
//! and see the health probe readmit it and new sessions reach it again.

use std::time::{Duration, Instant};

use http::StatusCode;

use crate::client::{Browser, ClientError, Page};
use crate::cluster::{wait_for, Cluster};

/// An expectation that did not hold, or a request that failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// What was expected and what happened.
    #[error("expected {0}")]
    Expected(String),
    /// A request through the balancer got no response: a client error.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The CA could not be read.
    #[error("cannot read the CA certificate: {0}")]
    Ca(std::io::Error),
}

/// What the demo measured.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// Requests sent through the balancer.
    pub requests: usize,
    /// Responses with a 5xx status, or no response at all.
    pub client_errors: usize,
    /// The node the first session landed on.
    pub first_node: String,
    /// The node that took over.
    pub other_node: String,
    /// How long the probe took to readmit the restarted node.
    pub readmitted_after: Duration,
}

const LOGIN: &str = "/carbon/admin/login.jsp";
const HOME: &str = "/carbon/admin/index.jsp";

/// Runs the demo against `cluster`, writing the transcript to `out`.
///
/// # Errors
/// The first [`DemoError`]: an expectation that did not hold.
pub async fn run(
    cluster: &mut Cluster,
    requests: usize,
    out: &mut dyn FnMut(&str),
) -> Result<DemoReport, DemoError> {
    let ca = std::fs::read(cluster.certs.ca()).map_err(DemoError::Ca)?;
    let mut report = DemoReport::default();
    let mut browser = Browser::new(&ca, cluster.front)?;
    let base = browser.base().to_owned();

    out(&format!("1. open {base}/carbon/"));
    let page = browser.get("/carbon/").await?;
    report.requests += 1;
    expect_redirect(&page, &format!("{base}{LOGIN}"))?;
    out(&format!(
        "   302 → {} (the node wrote its own URL; ProxyPassReverse rewrote it)",
        page.location.as_deref().unwrap_or_default()
    ));

    out("2. log in as admin");
    let first = login(&mut browser, &mut report).await?;
    if browser.cookie("ROUTEID").is_none() {
        return Err(DemoError::Expected(
            "the balancer's ROUTEID cookie after the first response".into(),
        ));
    }
    out(&format!(
        "   signed in on {first}: JSESSIONID={} (route .{first}), balancer cookie ROUTEID={}",
        browser.cookie("JSESSIONID").unwrap_or_default(),
        browser.cookie("ROUTEID").unwrap_or_default()
    ));
    report.first_node.clone_from(&first);

    out(&format!("3. {requests} more requests with that session"));
    stay_on(&mut browser, &first, requests, &mut report).await?;
    out(&format!(
        "   all {requests} served by {first}, session kept"
    ));

    let index = node_index(cluster, &first)?;
    let other = cluster.nodes[1 - index].route().to_owned();
    out(&format!(
        "4. stop {first} (its listeners close, its sessions are lost)"
    ));
    cluster.nodes[index].stop().await;

    out(&format!("5. carry on: {requests} requests"));
    let mut lost_session = false;
    for _ in 0..requests {
        let page = browser.get(HOME).await?;
        report.requests += 1;
        count_errors(&page, &mut report);
        if page.served_by.as_deref() != Some(other.as_str()) {
            return Err(DemoError::Expected(format!(
                "{other} to serve while {first} is down, got {:?} ({})",
                page.served_by, page.status
            )));
        }
        if page.status == StatusCode::FOUND {
            lost_session = true;
            break;
        }
    }
    if !lost_session {
        return Err(DemoError::Expected(format!(
            "{other} to send the session to the login page (sessions are node-local)"
        )));
    }
    out(&format!(
        "   {other} answered, with no client error; it does not know {first}'s session, so: log in again"
    ));
    let second = login(&mut browser, &mut report).await?;
    if second != other {
        return Err(DemoError::Expected(format!(
            "the new login on {other}, got {second}"
        )));
    }
    stay_on(&mut browser, &other, requests, &mut report).await?;
    out(&format!(
        "   signed in on {other}; {requests} requests all served by {other}"
    ));

    let stopped_at = Instant::now();
    let marked_down = wait_for(&cluster.registry, Duration::from_secs(30), |snap| {
        snap.get(&first)
            .is_some_and(|m| m.is_down_by(tower_balancer::registry::HealthSource::Probe))
    })
    .await;
    if marked_down.is_err() {
        return Err(DemoError::Expected(format!(
            "the health probe to mark {first} down within 30 s"
        )));
    }
    out(&format!(
        "   the health probe marked {first} down ({} ms after the requests above)",
        stopped_at.elapsed().as_millis()
    ));

    out(&format!("6. restart {first}"));
    let started = Instant::now();
    cluster.nodes[index]
        .start()
        .await
        .map_err(|e| DemoError::Expected(format!("{first} to restart: {e}")))?;
    let readmitted = wait_for(&cluster.registry, Duration::from_secs(30), |snap| {
        snap.get(&first)
            .is_some_and(|m| m.health() == tower_balancer::registry::Health::Healthy)
    })
    .await;
    if readmitted.is_err() {
        return Err(DemoError::Expected(format!(
            "the health probe to readmit {first} within 30 s"
        )));
    }
    report.readmitted_after = started.elapsed();
    out(&format!(
        "   the health probe readmitted {first} after {} ms",
        report.readmitted_after.as_millis()
    ));

    out("7. new sessions reach it again; the running session stays put");
    let mut reached = false;
    for attempt in 1..=6 {
        let mut fresh = Browser::new(&ca, cluster.front)?;
        let node = login(&mut fresh, &mut report).await?;
        out(&format!("   new browser {attempt}: signed in on {node}"));
        if node == first {
            stay_on(&mut fresh, &first, requests.min(5), &mut report).await?;
            reached = true;
            break;
        }
    }
    if !reached {
        return Err(DemoError::Expected(format!(
            "a new session on {first} within 6 logins after it was readmitted"
        )));
    }
    stay_on(&mut browser, &other, requests.min(5), &mut report).await?;
    out(&format!("   the earlier session is still on {other}"));

    if report.client_errors > 0 {
        return Err(DemoError::Expected(format!(
            "no client errors, got {}",
            report.client_errors
        )));
    }
    out(&format!(
        "done: {} requests, {} client errors, {first} → {other} → both",
        report.requests, report.client_errors
    ));
    report.other_node = other;
    Ok(report)
}

fn node_index(cluster: &Cluster, route: &str) -> Result<usize, DemoError> {
    cluster
        .nodes
        .iter()
        .position(|n| n.route() == route)
        .ok_or_else(|| DemoError::Expected(format!("a node named {route}")))
}

fn count_errors(page: &Page, report: &mut DemoReport) {
    if page.status.is_server_error() {
        report.client_errors += 1;
    }
}

fn expect_redirect(page: &Page, to: &str) -> Result<(), DemoError> {
    if page.status == StatusCode::FOUND && page.location.as_deref() == Some(to) {
        Ok(())
    } else {
        Err(DemoError::Expected(format!(
            "302 to {to}, got {} to {:?}",
            page.status, page.location
        )))
    }
}

/// Logs in; returns the node that holds the new session.
async fn login(browser: &mut Browser, report: &mut DemoReport) -> Result<String, DemoError> {
    let form = browser.get(LOGIN).await?;
    report.requests += 1;
    count_errors(&form, report);
    if form.status != StatusCode::OK || !form.body.contains("name=\"username\"") {
        return Err(DemoError::Expected(format!(
            "the login form, got {}",
            form.status
        )));
    }
    let page = browser
        .post_form(
            "/carbon/admin/login_action.jsp",
            &[("username", "admin"), ("password", "admin")],
        )
        .await?;
    report.requests += 1;
    count_errors(&page, report);
    expect_redirect(&page, &format!("{}{HOME}", browser.base()))?;
    let node = page
        .served_by
        .clone()
        .ok_or_else(|| DemoError::Expected("a node's name on the login response".into()))?;
    let session = browser.cookie("JSESSIONID").unwrap_or_default();
    if !session.ends_with(&format!(".{node}")) {
        return Err(DemoError::Expected(format!(
            "a session id ending in .{node}, got {session}"
        )));
    }
    let home = browser.get(HOME).await?;
    report.requests += 1;
    count_errors(&home, report);
    if home.status != StatusCode::OK || !home.body.contains("Signed in as") {
        return Err(DemoError::Expected(format!(
            "the home page after login, got {}",
            home.status
        )));
    }
    Ok(node)
}

/// `n` requests that must all be served by `node` with the session kept.
async fn stay_on(
    browser: &mut Browser,
    node: &str,
    n: usize,
    report: &mut DemoReport,
) -> Result<(), DemoError> {
    for i in 0..n {
        let page = browser.get(HOME).await?;
        report.requests += 1;
        count_errors(&page, report);
        if page.status != StatusCode::OK
            || page.served_by.as_deref() != Some(node)
            || !page.body.contains("Signed in as")
        {
            return Err(DemoError::Expected(format!(
                "request {} to stay on {node} signed in, got {} from {:?}",
                i + 1,
                page.status,
                page.served_by
            )));
        }
    }
    Ok(())
}
