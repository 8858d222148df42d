//! Command-line values shared by the load examples (`lb_bench`, and `hyper_floor` in the benches crate): they take the
//! same flags, so a script can start either the same way.

use std::net::SocketAddr;

/// Every value given after `name` (`--member a --member b` gives both).
pub(crate) fn arg_values(name: &str) -> Vec<String> {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].clone())
        .collect()
}

/// `--listen` (or `default`), `--seconds` (or 60) and the `--member`s, at least one.
pub(crate) fn common(
    default: &str,
) -> Result<(SocketAddr, u64, Vec<String>), Box<dyn std::error::Error>> {
    let listen = arg_values("--listen")
        .first()
        .map_or(default, String::as_str)
        .parse()?;
    let seconds = arg_values("--seconds")
        .first()
        .map_or(Ok(60), |s| s.parse())?;
    let members = arg_values("--member");
    if members.is_empty() {
        return Err("give at least one --member HOST:PORT".into());
    }
    Ok((listen, seconds, members))
}
