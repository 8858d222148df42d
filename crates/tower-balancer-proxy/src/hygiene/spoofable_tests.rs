//! The header table against the flat lists it was filed from, and the spellings members
//! read.

use super::*;
use proptest::prelude::*;

/// Names matched whole: the flat list [`candidates`] files by letter.
const NAMES: [&str; 44] = [
    "forwarded",
    "forwarded-for",
    "client-ip",
    "x-client-ip",
    "x-originating-ip",
    "x-rewrite-url",
    "x-host",
    "x-scheme",
    "x-url-scheme",
    "front-end-https",
    "x-http-host-override",
    "proxy",
    "x-custom-ip-authorization",
    "x-client-dn",
    "x-client-s-dn",
    "x-client-i-dn",
    "x-client-verify",
    "x-https",
    "client-cert",
    "client-cert-chain",
    "cdn-src-ip",
    "gap-auth",
    "https",
    "incap-client-ip",
    "x-auth-username",
    "x-auth-userid",
    "x-auth-user",
    "x-auth-email",
    "x-auth-roles",
    "x-auth-groups",
    "x-auth-subject",
    "x-anonymous-consumer",
    "x-id-token",
    "x-jwt-assertion",
    "x-ssl",
    "x-client-port",
    "x-consumer-id",
    "x-consumer-username",
    "x-consumer-custom-id",
    "x-credential-identifier",
    "x-userinfo",
    "fastly-ssl",
    "proxy-auth-cert",
    "proxy-ssl-id",
];

/// Families matched by their start, flat.
const PREFIXES: [&str; 52] = [
    "x-forwarded",
    "x-forward-",
    "x-original-",
    "x-real-",
    "x-remote-",
    "x-envoy-",
    "x-azure-",
    "x-appengine-",
    "x-arr-",
    "x-ssl-",
    "wl-proxy-",
    "proxy-client-",
    "x-proxyuser-",
    "x-proxymesh-",
    "x-cluster-client-",
    "true-client-",
    "fastly-client-",
    "akamai-client-",
    "fly-client-",
    "cf-connecting-",
    "cf-visitor",
    "cf-access-",
    "x-authenticated-",
    "x-auth-request-",
    "x-amzn-oidc-",
    "x-goog-authenticated-",
    "x-ms-client-principal",
    "x-webauth-",
    "x-amzn-mtls-",
    "x-goog-iap-",
    "x-ms-token-",
    "x-sucuri-",
    "x-pomerium-",
    "x-vercel-",
    "x-vouch-",
    "x-nf-client-",
    "x-client-cert",
    "remote-",
    "tailscale-",
    "ali-cdn-",
    "x-authentik-",
    "x-wso2-",
    "fly-forwarded-",
    "cloudfront-viewer-",
    "cloudfront-forwarded-",
    "http-",
    "ssl-",
    "shib-",
    "oidc-claim-",
    "oidc-access-token",
    "mellon-",
    "$ws",
];

/// What the flat lists say of `n`, every entry tried.
fn by_the_flat_lists(n: &str) -> bool {
    let n = n.as_bytes();
    NAMES.iter().any(|p| dashed(n, p.as_bytes()))
        || PREFIXES
            .iter()
            .any(|p| n.len() >= p.len() && dashed(&n[..p.len()], p.as_bytes()))
}

fn check(n: &str) -> bool {
    is_forwarding_header(&HeaderName::from_bytes(n.as_bytes()).unwrap())
}

#[test]
fn every_entry_of_the_flat_lists_is_filed() {
    for n in NAMES {
        assert!(check(n), "{n}");
        assert!(check(&n.replace('-', "_")), "{n}");
        assert!(!check(&format!("{n}z")), "{n}z");
    }
    for p in PREFIXES {
        for n in [p.to_owned(), format!("{p}ip"), p.replace('-', "_")] {
            assert!(check(&n), "{n}");
        }
    }
}

proptest! {
    // names made of the entries' own pieces, cut, joined, with dashes as underscores
    #[test]
    fn the_filed_table_agrees_with_the_flat_lists(
        i in 0usize..NAMES.len() + PREFIXES.len(),
        cut in 0usize..30,
        tail in "[a-z_-]{0,6}",
        under in any::<bool>(),
    ) {
        let entry = NAMES.get(i).copied().unwrap_or_else(|| PREFIXES[i - NAMES.len()]);
        let mut n = format!("{}{tail}", &entry[..cut.min(entry.len())]);
        if under {
            n = n.replace('-', "_");
        }
        prop_assume!(!n.is_empty());
        prop_assert_eq!(check(&n), by_the_flat_lists(&n), "{}", n);
    }
}

/// Names members and their frameworks read for an address, a scheme, a certificate, a
/// user or a URL, as each round of testing found them: every one is caught.
const CAUGHT: [&str; 110] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded",
    "x_forwarded_for",
    "x-real_ip",
    "forwarded",
    "forwarded-for",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-original-url",
    "x-rewrite-url",
    "front-end-https",
    "x-url-scheme",
    "x-host",
    "x-scheme",
    "x-original-uri",
    "x-envoy-original-path",
    "x-envoy-external-address",
    "x-http-host-override",
    "cf-connecting-ipv6",
    "fly-client-ip",
    "x-azure-clientip",
    "x-appengine-user-ip",
    "akamai-client-ip",
    "x-original-forwarded-for",
    "x-forward-for",
    "x-proxyuser-ip",
    "wl-proxy-client-ip",
    "wl-proxy-ssl",
    "proxy-client-ip",
    "ssl-client-cert",
    "x-ssl-client-cert",
    "x-client-cert",
    "x-arr-clientcert",
    "proxy",
    "x-custom-ip-authorization",
    "x-proxymesh-ip",
    "remote-user",
    "remote_user",
    "x-remote-user",
    "x-authenticated-user",
    "x-authenticated-userid",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-webauth-user",
    "x-goog-authenticated-user-email",
    "x-amzn-oidc-identity",
    "x-ms-client-principal-name",
    "cf-access-authenticated-user-email",
    "client-cert",
    "client-cert-chain",
    "x-amzn-mtls-clientcert-subject",
    "x-ms-token-aad-id-token",
    "x-goog-iap-jwt-assertion",
    "remote-groups",
    "remote-email",
    "remote-name",
    "x-client-dn",
    "x-client-verify",
    "x-client-cert-dn",
    "x-client-certificate",
    "incap-client-ip",
    "x-sucuri-clientip",
    "x-vercel-forwarded-for",
    "x-nf-client-connection-ip",
    "ali-cdn-real-ip",
    "cdn-src-ip",
    "tailscale-user-login",
    "tailscale-user-name",
    "https",
    "x-https",
    "gap-auth",
    "x-pomerium-jwt-assertion",
    "x-pomerium-claim-email",
    "x-vouch-user",
    "x-vouch-idp-claims-groups",
    "x-authentik-username",
    "x-auth-username",
    "x-consumer-username",
    "x-jwt-assertion",
    "x-wso2-client-certificate",
    "oidc_claim_email",
    "mellon_nameid",
    "shib-identity-provider",
    "$wsra",
    "$wssc",
    "$wscc",
    "$wsru",
    "proxy-auth-cert",
    "cloudfront-viewer-address",
    "cloudfront-forwarded-proto",
    "fly-forwarded-proto",
    "fastly-ssl",
    "http_client_ip",
    "http_x_forwarded_for",
    "x-client-port",
    "x-ssl",
    "ssl_cipher",
    "ssl_session_id",
    "x-userinfo",
    "x-id-token",
];

/// Names a member needs, and near misses of the table's entries: none is caught.
const PASSED: [&str; 21] = [
    "accept",
    "x-request-id",
    "cookie",
    "content-type",
    "x-forwarde",
    "via",
    "host",
    "retry-after",
    "x-auth-token",
    "authorization",
    "x-amzn-trace-id",
    "x-ms-request-id",
    "x-goog-api-key",
    "x-client-data",
    "x-access-token",
    "http2-settings",
    "x-sslx",
    "x-client-version",
    "if-none-match",
    "referer",
    "range",
];

#[test]
fn every_spelling_a_member_may_read_is_caught() {
    let caught = |n: &str| is_forwarding_header(&HeaderName::from_bytes(n.as_bytes()).unwrap());
    for n in CAUGHT {
        assert!(caught(n), "{n}");
    }
    for n in PASSED {
        assert!(!caught(n), "{n}");
    }
}

#[test]
fn stripping_keeps_everything_else() {
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-port", "443".parse().unwrap());
    h.insert("x_forwarded_for", "1.2.3.4".parse().unwrap());
    h.append("true-client-ip", "1.2.3.4".parse().unwrap());
    h.append("true-client-ip", "5.6.7.8".parse().unwrap());
    h.insert("accept", "*/*".parse().unwrap());
    strip_forwarding_headers(&mut h);
    assert_eq!(h.len(), 1);
    assert_eq!(h["accept"], "*/*");
}
