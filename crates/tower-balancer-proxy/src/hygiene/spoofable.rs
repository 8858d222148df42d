//! Which request headers let a client claim to be someone else, to have come over TLS, to
//! have signed in as a user, or to have asked for another URL: none of them may pass from a
//! peer that is not trusted.
//!
//! Why a list this long: members and their frameworks read many spellings. Rack, Spring,
//! ASP.NET and PHP honour `X-Forwarded-Port`, `-Prefix`, `-Ssl`, `-Scheme`; CDNs put the client
//! in `True-Client-IP`, `CF-Connecting-IP`, `Fastly-Client-IP`; IIS rewrites by
//! `X-Original-URL`. CGI, WSGI and PHP map `X_Forwarded_For` to the same variable as
//! `X-Forwarded-For`, so underscores count as dashes here (nginx drops every header with an
//! underscore by default for the same reason). Authenticating proxies name the user the
//! same way: Apache's `REMOTE_USER` arrives as `Remote-User`, oauth2-proxy writes
//! `X-Auth-Request-User`, Grafana reads `X-WEBAUTH-USER`, Google's IAP, AWS's ALB, Azure's
//! App Service and Cloudflare Access write `X-Goog-Authenticated-User-*`, `X-Amzn-Oidc-*`,
//! `X-MS-Client-Principal*` and `Cf-Access-*`; a member that trusts one of them behind us
//! would take a client's word for who is signed in.

use http::header::HeaderName;
use http::HeaderMap;

/// A name's candidates: entries matched whole, entries matched by their start.
type Candidates = (&'static [&'static [u8]], &'static [&'static [u8]]);

const NONE: &[&[u8]] = &[];

/// The forwarding headers of every proxy, CDN and platform that writes the client's
/// address, scheme, certificate, user or original URL, filed by a name's first byte (and,
/// for `x-` names, its third), so a name is compared with at most sixteen entries, most set
/// aside by their length, rather than 96 (every request's `X-Request-Id` with none). The flat lists
/// they were split from are in the tests, which hold the two to agreeing.
fn candidates(n: &[u8]) -> Candidates {
    const F: Candidates = (
        &[
            b"forwarded",
            b"forwarded-for",
            b"front-end-https",
            b"fastly-ssl",
        ],
        &[b"fastly-client-", b"fly-client-", b"fly-forwarded-"],
    );
    // RFC 9440's `Client-Cert` and `Client-Cert-Chain` among them
    const C: Candidates = (
        &[
            b"client-ip",
            b"cdn-src-ip",
            b"client-cert",
            b"client-cert-chain",
        ],
        &[
            b"cf-connecting-",
            b"cf-visitor",
            b"cf-access-",
            b"cloudfront-viewer-",
            b"cloudfront-forwarded-",
        ],
    );
    // Apache's `REMOTE_USER`, Authelia's `Remote-Groups`, `-Email`, `-Name`
    const R: Candidates = (NONE, &[b"remote-"]);
    // oauth2-proxy's
    const G: Candidates = (&[b"gap-auth"], NONE);
    // CGI's `HTTPS=on`, and CGI variable names sent as headers (`HTTP_CLIENT_IP`)
    const H: Candidates = (&[b"https"], &[b"http-"]);
    const I: Candidates = (&[b"incap-client-ip"], NONE);
    // httpoxy: CGI turns `Proxy` into HTTP_PROXY, which HTTP clients in the member then use;
    // Jetty's `Proxy-auth-cert` and `Proxy-ssl-id`
    const P: Candidates = (
        &[b"proxy", b"proxy-auth-cert", b"proxy-ssl-id"],
        &[b"proxy-client-"],
    );
    const T: Candidates = (NONE, &[b"true-client-", b"tailscale-"]);
    // Shibboleth's `Shib-*`, Tomcat's SSLValve `ssl_cipher` and the like
    const S: Candidates = (NONE, &[b"ssl-", b"shib-"]);
    // mod_auth_openidc's claims, mod_auth_mellon's attributes
    const O: Candidates = (NONE, &[b"oidc-claim-", b"oidc-access-token"]);
    const M: Candidates = (NONE, &[b"mellon-"]);
    // the WebSphere plugin's private headers: `$WSRA` (address), `$WSSC` (scheme), ...
    const DOLLAR: Candidates = (NONE, &[b"$ws"]);
    const W: Candidates = (NONE, &[b"wl-proxy-"]);
    const A: Candidates = (NONE, &[b"akamai-client-", b"ali-cdn-"]);
    match (n.first(), n.get(2)) {
        (Some(b'x'), Some(&third)) => x_candidates(third),
        (Some(b'f'), _) => F,
        (Some(b'c'), _) => C,
        (Some(b'p'), _) => P,
        (Some(b't'), _) => T,
        (Some(b's'), _) => S,
        (Some(b'w'), _) => W,
        (Some(b'a'), _) => A,
        (Some(b'r'), _) => R,
        (Some(b'g'), _) => G,
        (Some(b'h'), _) => H,
        (Some(b'i'), _) => I,
        (Some(b'o'), _) => O,
        (Some(b'm'), _) => M,
        (Some(b'$'), _) => DOLLAR,
        _ => (NONE, NONE),
    }
}

/// [`candidates`] for `x-` names, by their third byte.
fn x_candidates(third: u8) -> Candidates {
    const X_F: Candidates = (NONE, &[b"x-forwarded", b"x-forward-"]);
    const X_O: Candidates = (&[b"x-originating-ip"], &[b"x-original-"]);
    const X_R: Candidates = (&[b"x-rewrite-url"], &[b"x-real-", b"x-remote-"]);
    const X_E: Candidates = (NONE, &[b"x-envoy-"]);
    const X_A: Candidates = (
        &[
            b"x-auth-username",
            b"x-auth-userid",
            b"x-auth-user",
            b"x-auth-email",
            b"x-auth-roles",
            b"x-auth-groups",
            b"x-auth-subject",
            b"x-anonymous-consumer",
        ],
        &[
            b"x-azure-",
            b"x-appengine-",
            b"x-arr-",
            b"x-authenticated-",
            b"x-auth-request-",
            b"x-amzn-oidc-",
            b"x-amzn-mtls-",
            b"x-authentik-",
        ],
    );
    // APISIX's and Kong's OIDC plugins, WSO2 API Manager's backend JWT
    const X_I: Candidates = (&[b"x-id-token"], NONE);
    const X_J: Candidates = (&[b"x-jwt-assertion"], NONE);
    const X_G: Candidates = (NONE, &[b"x-goog-authenticated-", b"x-goog-iap-"]);
    const X_M: Candidates = (NONE, &[b"x-ms-client-principal", b"x-ms-token-"]);
    const X_W: Candidates = (NONE, &[b"x-webauth-", b"x-wso2-"]);
    const X_S: Candidates = (&[b"x-scheme", b"x-ssl"], &[b"x-ssl-", b"x-sucuri-"]);
    const X_P: Candidates = (NONE, &[b"x-proxyuser-", b"x-proxymesh-", b"x-pomerium-"]);
    const X_V: Candidates = (NONE, &[b"x-vercel-", b"x-vouch-"]);
    const X_N: Candidates = (NONE, &[b"x-nf-client-"]);
    const X_C: Candidates = (
        &[
            b"x-client-ip",
            b"x-client-dn",
            b"x-client-s-dn",
            b"x-client-i-dn",
            b"x-client-verify",
            b"x-client-port",
            b"x-custom-ip-authorization",
            // Kong's consumer
            b"x-consumer-id",
            b"x-consumer-username",
            b"x-consumer-custom-id",
            b"x-credential-identifier",
        ],
        &[b"x-cluster-client-", b"x-client-cert"],
    );
    const X_H: Candidates = (&[b"x-host", b"x-http-host-override", b"x-https"], NONE);
    const X_U: Candidates = (&[b"x-url-scheme", b"x-userinfo"], NONE);
    match third {
        b'f' => X_F,
        b'o' => X_O,
        b'r' => X_R,
        b'e' => X_E,
        b'a' => X_A,
        b's' => X_S,
        b'p' => X_P,
        b'c' => X_C,
        b'h' => X_H,
        b'u' => X_U,
        b'g' => X_G,
        b'm' => X_M,
        b'w' => X_W,
        b'v' => X_V,
        b'n' => X_N,
        b'i' => X_I,
        b'j' => X_J,
        _ => (NONE, NONE),
    }
}

/// `a` and `b` agree byte for byte, an underscore in `a` standing for a dash in `b`.
fn dashed(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || (x == b'_' && y == b'-'))
}

/// Whether a client could claim an address, a scheme, a host, a certificate, a signed-in
/// user or a URL through `name`: the whole `X-Forwarded-*` family, `Forwarded`, `X-Real-*`,
/// the client-address headers of CDNs and platforms (Cloudflare, Akamai, Fastly, Azure, App
/// Engine, Fly, Envoy, WebLogic's `WL-Proxy-*`), client-certificate headers, the user headers
/// of authenticating proxies (`Remote-*`, `X-Remote-*`, `X-Authenticated-*`,
/// `X-Auth-Request-*`, `GAP-Auth`, `X-WEBAUTH-*`, Pomerium's, Vouch's, Tailscale's, IAP's,
/// ALB's, App Service's and Cloudflare Access's tokens and claims), CGI's `HTTPS`,
/// `X-Original-*` and `X-Rewrite-URL`, and httpoxy's `Proxy`, in any spelling with
/// underscores for dashes.
///
/// ```
/// use http::HeaderName;
/// use tower_balancer_proxy::hygiene::is_forwarding_header;
///
/// assert!(is_forwarding_header(&HeaderName::from_static("x-forwarded-prefix")));
/// assert!(is_forwarding_header(&HeaderName::from_static("x_forwarded_for")));
/// assert!(is_forwarding_header(&HeaderName::from_static("true-client-ip")));
/// assert!(is_forwarding_header(&HeaderName::from_static("remote-user")));
/// assert!(!is_forwarding_header(&HeaderName::from_static("accept")));
/// ```
#[must_use]
pub fn is_forwarding_header(name: &HeaderName) -> bool {
    let n = name.as_str().as_bytes();
    let (names, prefixes) = candidates(n);
    names.iter().any(|p| dashed(n, p))
        || prefixes
            .iter()
            .any(|p| n.len() >= p.len() && dashed(&n[..p.len()], p))
}

/// Removes every header [`is_forwarding_header`] names: what an untrusted peer sent, or any
/// peer when the client's address is unknown (fail closed), so a member never mistakes what
/// a client wrote for what the proxy vouches for.
pub fn strip_forwarding_headers(headers: &mut HeaderMap) {
    // one pass over the names, no hashing and no allocation when there is none (the usual case)
    let mut found: Option<Vec<HeaderName>> = None;
    for name in headers.keys() {
        if is_forwarding_header(name) {
            found.get_or_insert_with(Vec::new).push(name.clone());
        }
    }
    for name in found.into_iter().flatten() {
        headers.remove(&name);
    }
}

#[cfg(test)]
#[path = "spoofable_tests.rs"]
mod tests;
