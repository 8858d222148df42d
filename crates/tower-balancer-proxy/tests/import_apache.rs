//! N: `import-apache` on configurations from Apache's own documentation, each imported
//! into a file that `--check` passes, with what could not be carried said.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use tower_balancer_proxy::config::{import_apache, ConfigFile, ImportError, ImportOptions};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("import-apache-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Imports `conf` and checks the result; the TOML and what was not carried.
fn import(name: &str, conf: &str) -> (String, Vec<String>) {
    let d = dir(name);
    std::fs::write(d.join("httpd.conf"), conf).unwrap();
    let imported = import_apache(&d.join("httpd.conf"), &ImportOptions::new()).unwrap();
    let toml = d.join("lb.toml");
    std::fs::write(&toml, &imported.toml).unwrap();
    if let Err(errors) = ConfigFile::check_file(&toml) {
        panic!("--check refused the import: {errors:?}\n{}", imported.toml);
    }
    let _ = std::fs::remove_dir_all(&d);
    (imported.toml, imported.not_carried)
}

fn has(text: &str, lines: &[&str]) {
    for l in lines {
        assert!(
            text.lines().any(|t| t.starts_with(l)),
            "no `{l}` in\n{text}"
        );
    }
}

#[test]
fn mod_proxy_balancer_s_sticky_example() {
    // https://httpd.apache.org/docs/2.4/mod/mod_proxy_balancer.html, "Example of a balancer
    // configuration" with the ROUTEID cookie
    let (toml, notes) = import(
        "sticky",
        r#"Header add Set-Cookie "ROUTEID=.%{BALANCER_WORKER_ROUTE}e; path=/" env=BALANCER_ROUTE_CHANGED
<Proxy "balancer://mycluster">
    BalancerMember "http://192.168.1.50:80" route=1
    BalancerMember "http://192.168.1.51:80" route=2
    ProxySet stickysession=ROUTEID
</Proxy>
ProxyPass        "/test" "balancer://mycluster"
ProxyPassReverse "/test" "balancer://mycluster"
"#,
    );
    has(
        &toml,
        &[
            "name = \"mycluster\"",
            "cookie = \"ROUTEID\"",
            "stickysession = \"\"",
            "url = \"http://192.168.1.50:80\"",
            "route = \"1\"",
            "route = \"2\"",
            // ProxyPass /test balancer://mycluster: /test/x reaches members as /x
            "prefix = \"/test\"",
            "balancer = \"mycluster\"",
            "rewrite_prefix = \"/\"",
        ],
    );
    assert!(!notes.iter().any(|n| n.contains("ProxyPass")), "{notes:?}");
}

#[test]
fn mod_proxy_balancer_s_hot_standby_example() {
    let (toml, _) = import(
        "standby",
        r#"Listen 8080
<Proxy "balancer://hotcluster">
    BalancerMember "http://www2.example.com:8080" loadfactor=1
    BalancerMember "http://www3.example.com:8080" loadfactor=2
    # The server below is on hot standby
    BalancerMember "http://www4.example.com:8080" status=+H
    ProxySet lbmethod=bytraffic
</Proxy>
ProxyPreserveHost On
ProxyPass        "/" "balancer://hotcluster/"
ProxyPassReverse "/" "balancer://hotcluster/"
"#,
    );
    has(
        &toml,
        &[
            "listen = \"0.0.0.0:8080\"",
            "lbmethod = \"bytraffic\"",
            "preserve_host = true",
            "loadfactor = 2",
            "status = \"standby\"",
        ],
    );
}

#[test]
fn mod_proxy_hcheck_s_example() {
    // https://httpd.apache.org/docs/2.4/mod/mod_proxy_hcheck.html, "Usage examples"
    let (toml, notes) = import(
        "hcheck",
        r#"ProxyHCExpr ok234 {%{REQUEST_STATUS} =~ /^[234]/}
ProxyHCExpr gdown {%{REQUEST_STATUS} =~ /^[5]/}
ProxyHCExpr in_maint {hc('body') !~ /Under maintenance/}

<Proxy balancer://foo>
  BalancerMember http://www.example.com/  hcmethod=GET hcexpr=in_maint hcuri=/status.php
  BalancerMember http://www2.example.com/ hcmethod=HEAD hcexpr=ok234 hcinterval=10
  BalancerMember http://www3.example.com/ hcmethod=TCP hcinterval=5 hcpasses=2 hcfails=3
  BalancerMember http://www4.example.com/
</Proxy>

ProxyPass "/" "balancer://foo"
ProxyPassReverse "/" "balancer://foo"
"#,
    );
    has(
        &toml,
        &[
            "[balancer.health]",
            "method = \"GET\"",
            "uri = \"/status.php\"",
            "interval = \"10s\"",
        ],
    );
    for said in ["hcexpr=in_maint", "hcmethod=HEAD", "hcinterval=5"] {
        assert!(
            notes.iter().any(|n| n.contains(said)),
            "{said} not said: {notes:?}"
        );
    }
}

#[test]
fn virtual_hosts_with_tls_members_and_includes() {
    let d = dir("vhosts");
    std::fs::create_dir_all(d.join("sites")).unwrap();
    std::fs::write(d.join("ca.pem"), "").unwrap();
    std::fs::write(
        d.join("httpd.conf"),
        "ServerRoot \".\"\nLoadModule proxy_module modules/mod_proxy.so\nIncludeOptional sites/*.conf\n",
    )
    .unwrap();
    std::fs::write(
        d.join("sites/10-static.conf"),
        "<VirtualHost *:80>\n  ServerName static.example.com\n  DocumentRoot /srv/www\n</VirtualHost>\n",
    )
    .unwrap();
    std::fs::write(
        d.join("sites/20-app.conf"),
        "<VirtualHost *:8080>\n  ServerName app.example.com\n  SSLProxyEngine on\n  SSLProxyVerify none\n  \
         <Proxy balancer://app>\n    BalancerMember https://10.0.0.1:8443 route=a max=50 timeout=20 retry=30\n    \
         BalancerMember https://10.0.0.2:8443 route=b max=50 acquire=3000\n  </Proxy>\n  \
         ProxyPass / balancer://app/ stickysession=JSESSIONID|jsessionid failonstatus=503\n  \
         RequestReadTimeout header=20-40,MinRate=500 body=20\n</VirtualHost>\n",
    )
    .unwrap();
    let cwd_independent = import_apache(&d.join("httpd.conf"), &ImportOptions::new()).unwrap();
    let text = &cwd_independent.toml;
    has(
        text,
        &[
            "listen = \"0.0.0.0:8080\"",
            "server_name = \"app.example.com\"",
            "max = 50",
            "timeout = \"20s\"",
            "queue_timeout = \"3000ms\"",
            "stickysession = \"JSESSIONID|jsessionid\"",
            "failonstatus = [503]",
            "header_read_timeout = \"20s\"",
            "request_body_timeout = \"20s\"",
        ],
    );
    let notes = cwd_independent.not_carried.join("\n");
    for said in [
        "static.example.com",
        "SSLProxyVerify",
        "retry=30",
        "LoadModule",
    ] {
        assert!(notes.contains(said), "{said} not said:\n{notes}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn what_cannot_be_imported_is_said() {
    let d = dir("bad");
    std::fs::write(d.join("none.conf"), "ServerName x\nDocumentRoot /srv\n").unwrap();
    let e = import_apache(&d.join("none.conf"), &ImportOptions::new()).unwrap_err();
    assert!(matches!(e, ImportError::NoBalancer(_)), "{e}");
    std::fs::write(
        d.join("open.conf"),
        "<VirtualHost *:80>\nProxyPass / balancer://x/\n",
    )
    .unwrap();
    let e = import_apache(&d.join("open.conf"), &ImportOptions::new()).unwrap_err();
    assert!(e.to_string().contains("never closed"), "{e}");
    let e = import_apache(&d.join("missing.conf"), &ImportOptions::new()).unwrap_err();
    assert!(e.to_string().contains("missing.conf"), "{e}");
    // a hostile value cannot write TOML of its own
    std::fs::write(
        d.join("evil.conf"),
        "<Proxy balancer://b>\nBalancerMember \"http://h:1\\\"\nx = 1\" route=a\n</Proxy>\nProxyPass / balancer://b/\nServerName \"a\\\"\n[manager]\"\n",
    )
    .unwrap();
    if let Ok(imported) = import_apache(&d.join("evil.conf"), &ImportOptions::new()) {
        let parsed: Result<toml::Table, _> = toml::from_str(&imported.toml);
        let table = parsed.unwrap();
        assert!(table.get("manager").is_none(), "{}", imported.toml);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn meaning_is_kept_or_said_for_paths_tls_and_access() {
    let (toml, notes) = import(
        "meaning",
        r#"<VirtualHost *:8080>
  ServerName app.example.com
  SSLCertificateFile /nonexistent/cert.pem
  <Proxy balancer://Other>
    BalancerMember http://10.0.0.9:80
  </Proxy>
  <Proxy balancer://web>
    BalancerMember http://10.0.0.1:80/ route=a
    Require ip 192.168.0.0/16
  </Proxy>
  ProxyPass /static/ !
  ProxyPass /app/ balancer://other/
  ProxyPass / balancer://WEB/app/
  <Location /admin>
    AuthType Basic
    Require valid-user
  </Location>
  SSLVerifyClient require
</VirtualHost>
"#,
    );
    // the balancer for `/` wins wherever it is written; names are case-insensitive
    has(
        &toml,
        &[
            "name = \"web\"",
            "url = \"http://10.0.0.1:80/\"",
            // the exclusion comes first, as written; / gets the target's path
            "prefix = \"/static/\"",
            "respond = 404",
            "rewrite_prefix = \"/app/\"",
        ],
    );
    assert!(
        toml.find("\"/static/\"") < toml.find("rewrite_prefix"),
        "{toml}"
    );
    // no SSLEngine on: plain HTTP, as Apache served it
    assert!(!toml.contains("certificate ="), "{toml}");
    let notes = notes.join("\n");
    for said in [
        "SSLEngine is not on",
        "another balancer or server",
        "ACCESS CONTROL IS NOT CARRIED",
        "CLIENT CERTIFICATES ARE NOT CHECKED",
    ] {
        assert!(notes.contains(said), "`{said}` not said:\n{notes}");
    }
    assert_eq!(
        notes.matches("ACCESS CONTROL IS NOT CARRIED").count(),
        2,
        "{notes}"
    );
}

#[test]
fn two_virtual_hosts_with_paths_and_redirects_become_routes() {
    // the recipe's shape with a second name on its own certificate, a redirect of / and
    // an API path the members serve elsewhere
    let certs = dir("two-hosts-certs");
    for name in ["wso2.com", "api"] {
        let made = rcgen::generate_simple_self_signed(vec![format!("{name}.test")]).unwrap();
        std::fs::write(certs.join(format!("{name}.pem")), made.cert.pem()).unwrap();
        std::fs::write(
            certs.join(format!("{name}.key")),
            made.key_pair.serialize_pem(),
        )
        .unwrap();
    }
    let conf = r#"Listen 443
<Proxy balancer://wso2isbalancer>
  BalancerMember https://10.0.0.11:9443 route=node1
  BalancerMember https://10.0.0.12:9444 route=node2
</Proxy>
<VirtualHost *:443>
  ServerName wso2.com
  ServerAlias www.wso2.com
  SSLEngine on
  SSLCertificateFile /etc/ssl/wso2.com.pem
  SSLCertificateKeyFile /etc/ssl/wso2.com.key
  RedirectMatch ^/$ https://wso2.com/carbon/
  ProxyPass /carbon balancer://wso2isbalancer/carbon
  ProxyPassReverse /carbon balancer://wso2isbalancer/carbon
</VirtualHost>
<VirtualHost *:443>
  ServerName api.wso2.com
  SSLEngine on
  SSLCertificateFile /etc/ssl/api.pem
  SSLCertificateKeyFile /etc/ssl/api.key
  ProxyPass /users/ balancer://wso2isbalancer/scim2/Users/
  Redirect permanent /old https://api.wso2.com/users
  Header set X-Frame-Options DENY
</VirtualHost>
"#
    .replace("/etc/ssl", &certs.display().to_string());
    let (toml, notes) = import("two-hosts", &conf);
    let _ = std::fs::remove_dir_all(&certs);
    has(
        &toml,
        &[
            "names = [\"wso2.com\", \"www.wso2.com\"]",
            "names = [\"api.wso2.com\"]",
            &format!("certificate = \"{}/api.pem\"", certs.display()),
            "path = \"/\"",
            "redirect = \"https://wso2.com/carbon/\"",
            "prefix = \"/carbon\"",
            "prefix = \"/users/\"",
            "rewrite_prefix = \"/scim2/Users/\"",
            "status = 301",
        ],
    );
    // /carbon goes to /carbon: no rewrite written for it
    assert_eq!(toml.matches("rewrite_prefix").count(), 1, "{toml}");
    assert_eq!(toml.matches("[[vhost]]").count(), 2, "{toml}");
    let notes = notes.join("\n");
    assert!(notes.contains("X-Frame-Options"), "{notes}");
    assert!(!notes.contains("a second virtual host (api"), "{notes}");
}

#[test]
fn paths_apache_sends_elsewhere_locations_and_server_lines_keep_their_meaning() {
    let (toml, notes) = import(
        "elsewhere",
        r#"Listen 8080
ProxyPass /global/ balancer://b/g/
<Proxy balancer://b>
  BalancerMember http://10.0.0.1:80
</Proxy>
<VirtualHost *:8080>
  ServerName one.example.com
  ServerAlias web?.example.com
  ProxyPass /other/ balancer://two/
  ProxyPass /ext/ http://10.0.0.9/
  <Location /admin>
    ProxyPass balancer://b/adm
    Require ip 10.0.0.0/8
  </Location>
  ProxyPass / balancer://b/
</VirtualHost>
<VirtualHost *:8443>
  ServerName one.example.com
  ProxyPass / balancer://b/
</VirtualHost>
<VirtualHost *:8080>
  ServerName redirect.example.com
  Redirect permanent / https://one.example.com/
</VirtualHost>
"#,
    );
    // the server's ProxyPass comes first; paths sent elsewhere answer 404 rather than reach
    // this balancer; the <Location>'s ProxyPass is a route; no ProxyPassReverse: none here
    // (the <Location>'s first: Apache tries it before the host's list)
    let order: Vec<usize> = [
        "prefix = \"/admin\"",
        "rewrite_prefix = \"/adm\"",
        "prefix = \"/global/\"",
        "prefix = \"/other/\"",
        "prefix = \"/ext/\"",
    ]
    .iter()
    .map(|l| {
        toml.find(l)
            .unwrap_or_else(|| panic!("no `{l}` in\n{toml}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{toml}");
    has(
        &toml,
        &["rewrite_prefix = \"/g/\"", "proxy_pass_reverse = false"],
    );
    assert_eq!(toml.matches("respond = 404").count(), 2, "{toml}");
    // the server's ProxyPass is the redirecting host's too: it joins, with its redirect
    assert_eq!(toml.matches("\n[[vhost]]").count(), 2, "{toml}");
    has(
        &toml,
        &["names = [\"redirect.example.com\"]", "status = 301"],
    );
    let notes = notes.join("\n");
    for said in [
        "on another port",
        "web?.example.com",
        "another balancer or server",
        "ACCESS CONTROL",
    ] {
        assert!(notes.contains(said), "`{said}` not said:\n{notes}");
    }
}

#[test]
fn locations_come_first_conditions_hold_and_inheritance_can_be_off() {
    let (toml, notes) = import(
        "conditions",
        r#"ProxyPassInherit Off
ProxyPass /global/ balancer://b/g/
<Proxy balancer://b>
  BalancerMember http://10.0.0.1:80
</Proxy>
<VirtualHost *:80>
  ServerName one.example.com
  ProxyPass /app/ balancer://b/
  ProxyPass /app/x !
  <Location /secret>
    ProxyPass !
  </Location>
  <IfModule mod_proxy.c>
    ProxyPass /admin !
  </IfModule>
  <IfModule !mod_proxy.c>
    ProxyPass /never !
  </IfModule>
  Redirect gone /old
  Redirect /bad "https://n.example.com/a b"
</VirtualHost>
"#,
    );
    // Apache tries the <Location>'s ProxyPass before the host's `/`
    let secret = toml.find("prefix = \"/secret\"").unwrap();
    let app = toml.find("prefix = \"/app/\"").unwrap();
    assert!(secret < app, "{toml}");
    has(&toml, &["prefix = \"/admin\"", "respond = 410"]);
    assert!(
        !toml.contains("/never") || !toml.contains("prefix = \"/never\""),
        "{toml}"
    );
    assert!(!toml.contains("/global/"), "{toml}");
    let notes = notes.join("\n");
    assert!(notes.contains("a negated condition"), "{notes}");
    assert!(notes.contains("cannot redirect with"), "{notes}");
    // /app/x after /app/ was never reached in Apache either: said, not written
    assert!(notes.contains("never reached in Apache either"), "{notes}");
    assert!(!toml.contains("prefix = \"/app/x\""), "{toml}");
}

/// Timeouts are the balancer's here: a member's is used for every member only when the
/// balancer has none, `ProxyTimeout` gives one, and every value not in force is said. A
/// member's `timeout=3` used to set the whole balancer's over `ProxySet timeout=4`, and
/// `ProxyTimeout` and `ProxyPass … timeout=` went without a word.
#[test]
fn timeouts_of_members_and_of_the_balancer_are_carried_or_said() {
    let (toml, not_carried) = import(
        "timeouts",
        "<VirtualHost *:80>\nServerName a.com\nProxyTimeout 7\n<Proxy balancer://b>\n\
         BalancerMember http://127.0.0.1:9001 route=n1 connectiontimeout=2\n\
         BalancerMember http://127.0.0.1:9002 route=n2 timeout=3 connectiontimeout=5\n\
         ProxySet timeout=4\n</Proxy>\nProxyPass / balancer://b/ timeout=11\n</VirtualHost>\n",
    );
    has(&toml, &["timeout = \"11s\"", "connection_timeout = \"2s\""]);
    let said = not_carried.join("\n");
    // each at the line it came from
    for what in [
        "httpd.conf:3 `ProxyTimeout 7`",
        "httpd.conf:7 `timeout=4`",
        "`timeout=3`",
        "`connection_timeout=5`",
    ] {
        assert!(said.contains(what), "{what} not said in\n{said}");
    }
    // ProxyTimeout alone is the balancer's timeout
    let (toml, _) = import(
        "proxy-timeout",
        "<VirtualHost *:80>\nServerName a.com\nProxyTimeout 7\n<Proxy balancer://b>\n\
         BalancerMember http://127.0.0.1:9001 route=n1\n</Proxy>\n\
         ProxyPass / balancer://b/\n</VirtualHost>\n",
    );
    has(&toml, &["timeout = \"7s\""]);
    // the main server's timeouts are every virtual host's: ProxyTimeout over Timeout, and a
    // member's only where the balancer has none
    let (toml, not_carried) = import(
        "server-timeouts",
        "Timeout 30\nProxyTimeout 120\n<VirtualHost *:80>\nServerName a.com\n<Proxy balancer://b>\n\
         BalancerMember http://127.0.0.1:9001 route=n1 timeout=7\n\
         BalancerMember http://127.0.0.1:9002 route=n2\n</Proxy>\n\
         ProxyPass / balancer://b/\n</VirtualHost>\n",
    );
    has(&toml, &["timeout = \"120s\""]);
    let said = not_carried.join("\n");
    assert!(said.contains("`timeout=7`"), "{said}");
    // `Timeout` is only the default of `ProxyTimeout` (Apache's own rule): replaced, it is
    // not a value left out, and saying so was noise
    assert!(!said.contains("`Timeout 30`"), "{said}");
    let (toml, _) = import(
        "server-timeout",
        "Timeout 30\n<VirtualHost *:80>\nServerName a.com\n<Proxy balancer://b>\n\
         BalancerMember http://127.0.0.1:9001 route=n1\n</Proxy>\n\
         ProxyPass / balancer://b/\n</VirtualHost>\n",
    );
    has(&toml, &["timeout = \"30s\""]);
}
