//! The project README's TOML example builds, and the error message it shows is the one a
//! user sees, word for word.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use tower_balancer_proxy::config::ConfigFile;

#[test]
fn the_readme_file_example_builds_and_its_error_example_is_what_a_user_sees() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("```toml\n")
        .expect("the README has a TOML example")
        + 8;
    let text = &readme[start..start + readme[start..].find("```").expect("closed")];
    // beside the cookie key the file names, as the comment above it says to make
    let dir = std::env::temp_dir().join(format!("readme-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cookie.key"), [7u8; 32]).unwrap();
    let config = ConfigFile::from_toml(text, &dir.join("lb.toml")).unwrap();
    let gateway = config.build().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(gateway.registry().load().len(), 2);
    // a server name with a port keeps it in the public URL
    assert_eq!(
        gateway
            .public_url()
            .authority()
            .map(http::uri::Authority::as_str),
        Some("localhost:8080")
    );
    let bad = text.replace("route = \"node2\"", "route = \"node 2\"");
    let e = ConfigFile::from_toml(&bad, Path::new("lb.toml")).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with(
            "lb.toml:17: `balancer.member[1].route`: route `node 2`: invalid member id"
        ),
        "{shown}"
    );
    assert!(
        readme.contains(&shown),
        "the README shows another message than {shown}"
    );
}
