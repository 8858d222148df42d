//! The balancer-manager: views, actions, nonce and same-origin checks, escaping.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_balancer::registry::{AdminState, MemberId, MemberSpec, Registry};
use tower_balancer_proxy::manager::{ManagerInfo, ManagerService};

fn setup() -> (Registry, ManagerService) {
    let r = Registry::new();
    r.insert(MemberSpec::new(
        MemberId::new("node1").unwrap(),
        "https://abc.com:9443".parse().unwrap(),
    ))
    .unwrap();
    r.insert(MemberSpec::new(
        MemberId::new("node2").unwrap(),
        "https://xyz.com:9444".parse().unwrap(),
    ))
    .unwrap();
    let info = ManagerInfo {
        name: "wso2 <cluster>".into(),
        strategy: "round-robin".into(),
        sticky: "JSESSIONID | ROUTEID".into(),
        failover: "3 retries".into(),
    };
    let m = ManagerService::new(r.clone(), info).unwrap();
    (r, m)
}

async fn text(res: http::Response<Full<Bytes>>) -> (StatusCode, String) {
    let status = res.status();
    (
        status,
        String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap(),
    )
}

fn post(form: &str, origin: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::post("/balancer-manager")
        .header("host", "127.0.0.1:9000")
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(o) = origin {
        b = b.header("origin", o);
    }
    b.body(Full::new(Bytes::from(form.to_owned()))).unwrap()
}

#[tokio::test]
async fn the_page_shows_apaches_columns_escaped_and_hardened() {
    let (_, m) = setup();
    let res = m
        .oneshot(
            Request::get("/balancer-manager")
                .header("host", "127.0.0.1:9000")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let (status, page) = text(res).await;
    assert_eq!(status, StatusCode::OK);
    for col in [
        "Worker URL",
        "Route",
        "Factor",
        "Set",
        "Status",
        "Elected",
        "Busy",
        "Load",
        "To",
        "From",
        "Health",
        "Latency",
    ] {
        assert!(page.contains(&format!("<th>{col}</th>")), "{col}");
    }
    assert!(page.contains("https://abc.com:9443/") && page.contains("node2"));
    assert!(page.contains("wso2 &lt;cluster&gt;") && !page.contains("<cluster>"));
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
}

#[tokio::test]
async fn the_json_view_lists_members() {
    let (_, m) = setup();
    let req = Request::get("/")
        .header("host", "localhost")
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (_, body) = text(m.oneshot(req).await.unwrap()).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], "wso2 <cluster>");
    assert_eq!(v["members"][1]["route"], "node2");
    assert_eq!(v["members"][1]["status"], "active");
    assert_eq!(v["members"][1]["factor"], 1);
}

#[tokio::test]
async fn actions_need_the_nonce_and_the_same_origin() {
    let (r, m) = setup();
    let nonce = m.nonce().to_owned();
    let same = Some("http://127.0.0.1:9000");
    let cases = [
        (
            post("member=node1&action=drain", same),
            StatusCode::FORBIDDEN,
        ),
        (
            post("nonce=wrong&member=node1&action=drain", same),
            StatusCode::FORBIDDEN,
        ),
        (
            post(
                &format!("nonce={nonce}&member=node1&action=drain"),
                Some("https://evil.example"),
            ),
            StatusCode::FORBIDDEN,
        ),
        (
            post(&format!("nonce={nonce}&member=node1&action=drain"), None),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (req, want) in cases {
        assert_eq!(m.clone().oneshot(req).await.unwrap().status(), want);
    }
    let mut cross_site = post(&format!("nonce={nonce}&member=node1&action=drain"), same);
    cross_site
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(
        m.clone().oneshot(cross_site).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        r.load().get("node1").unwrap().state(),
        AdminState::Active,
        "a refused action changed state"
    );

    let ok = m
        .clone()
        .oneshot(post(
            &format!("nonce={nonce}&member=node1&action=drain"),
            same,
        ))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(ok.headers()["location"], "/balancer-manager");
    assert_eq!(r.load().get("node1").unwrap().state(), AdminState::Draining);
    for (action, state) in [
        ("standby", AdminState::Standby),
        ("disable", AdminState::Disabled),
        ("enable", AdminState::Active),
    ] {
        let res = m
            .clone()
            .oneshot(post(
                &format!("nonce={nonce}&member=node1&action={action}"),
                same,
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.load().get("node1").unwrap().state(), state);
    }
    // a Referer from the same origin also counts
    let mut by_referer = post(
        &format!("nonce={nonce}&member=node2&action=weight&weight=5"),
        None,
    );
    by_referer.headers_mut().insert(
        "referer",
        "http://127.0.0.1:9000/balancer-manager".parse().unwrap(),
    );
    assert_eq!(
        m.clone().oneshot(by_referer).await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(r.load().get("node2").unwrap().weight(), 5);
}

#[tokio::test]
async fn bad_actions_are_refused_and_change_nothing() {
    let (r, m) = setup();
    let nonce = m.nonce().to_owned();
    let same = Some("http://127.0.0.1:9000");
    for form in [
        format!("nonce={nonce}&member=node1&action=weight&weight=0"),
        format!("nonce={nonce}&member=node1&action=weight&weight=abc"),
        format!("nonce={nonce}&member=node9&action=drain"),
        format!("nonce={nonce}&member=node1&action=explode"),
        format!("nonce={nonce}&member=%3Cscript%3E&action=drain"),
    ] {
        let (status, body) = text(m.clone().oneshot(post(&form, same)).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}");
        assert!(!body.contains('<'));
    }
    assert_eq!(r.load().get("node1").unwrap().weight(), 1);
    let put = Request::put("/")
        .header("host", "[::1]:9000")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(
        m.oneshot(put).await.unwrap().status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn a_foreign_host_gets_421_and_cannot_read_the_nonce_or_act() {
    // DNS rebinding: evil.test resolves to the manager's address, the browser sends its name
    let (r, m) = setup();
    let nonce = m.nonce().to_owned();
    let get = Request::get("/balancer-manager")
        .header("host", "evil.test:9000")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, body) = text(m.clone().oneshot(get).await.unwrap()).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert!(!body.contains(&nonce));
    let mut post = post(
        &format!("nonce={nonce}&member=node1&action=disable"),
        Some("http://evil.test:9000"),
    );
    post.headers_mut()
        .insert("host", "evil.test:9000".parse().unwrap());
    let (status, _) = text(m.clone().oneshot(post).await.unwrap()).await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(r.load().get("node1").unwrap().state(), AdminState::Active);
    // no Host at all is no better
    let bare = Request::get("/").body(Full::new(Bytes::new())).unwrap();
    assert_eq!(
        m.clone().oneshot(bare).await.unwrap().status(),
        StatusCode::MISDIRECTED_REQUEST
    );
    // a name the operator allows is answered
    let m = m.allow_hosts(["LB-Admin.internal"]);
    let ok = Request::get("/balancer-manager")
        .header("host", "lb-admin.internal:9000")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(m.oneshot(ok).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn only_its_own_paths_answer() {
    let (_, m) = setup();
    for path in ["/metrics", "/balancer-manager/x", "/favicon.ico"] {
        let req = Request::get(path)
            .header("host", "127.0.0.1:9000")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, body) = text(m.clone().oneshot(req).await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!body.contains("Worker URL"), "{path}");
    }
}
