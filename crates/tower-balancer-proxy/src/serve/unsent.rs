//! A cap on what a client socket holds that the kernel has not sent yet
//! (`TCP_NOTSENT_LOWAT`).
//!
//! Why: without it a write fills the whole send buffer, which the kernel grows to MiBs
//! while a client reads fast, and wakes the writer again only once a third of that is free.
//! A client that then read steadily but slowly (50 KB/s, even 500 KB/s) saw no write make
//! progress for seconds, and the send timeout cut it while it was reading (found by a
//! hostile test; `tests/slow_readers.rs`, `scripts/slow-readers.sh`). With a cap on what
//! waits unsent, a write makes progress each time the client takes a few hundred KiB (at
//! the default 60 s send timeout a client reading 10 KB/s read on for 130 s, one reading
//! 5 KB/s was cut; at 5 s, 80 KB/s and 60 KB/s), a slow client pins this much
//! unsent kernel memory instead of MiBs, and HTTP/2's answers interleave sooner behind a
//! big one. The cost is more, smaller writes for big answers to fast clients: ten 32 MiB
//! downloads on loopback took 32, 37, 31 clock ticks of CPU against 26, 30, 32 without
//! (256 KiB: 37, 38, 29; `scripts/slow-readers.sh`).

use tokio::net::TcpStream;

/// What a client socket may hold unsent.
const UNSENT_LIMIT: u32 = 512 * 1024;

/// Sets [`UNSENT_LIMIT`] on a client socket, where the system has the option.
pub(super) fn limit_unsent(sock: &TcpStream) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket2::SockRef::from(sock).set_tcp_notsent_lowat(UNSENT_LIMIT) {
        tracing::debug!(error = %e, "TCP_NOTSENT_LOWAT not set");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = sock;
}
