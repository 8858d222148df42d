//! The client's socket under TLS, with what it sent counted, so the send timeout judges
//! what reached the client rather than what rustls took.
//!
//! Why: the connection's watch (`timeout::Watched`) sits above rustls, which takes an
//! answer's bytes into its own buffer and writes them to the socket while it flushes. A
//! client that read nothing was seen only once rustls's buffer was full, and a flush
//! waiting on the socket was not seen at all: an HTTP/2 client over TLS that read nothing,
//! with a large window, held its connection and its members' exchanges for three send
//! timeouts, and was then closed for its window instead (found by a hostile test). The watch
//! now also judges flushes, and it counts progress by what this socket sent: a client
//! reading slowly while an answer's tail is flushed makes progress; one reading nothing
//! does not.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::progress::Progress;

/// A client's TCP socket under TLS, adding what it sends to [`Progress::sent`].
#[derive(Debug)]
pub(super) struct Counted {
    sock: TcpStream,
    progress: Arc<Progress>,
}

impl Counted {
    pub(super) const fn new(sock: TcpStream, progress: Arc<Progress>) -> Self {
        Self { sock, progress }
    }

    fn count(&self, res: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = res {
            self.progress.sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sock).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.sock).poll_write(cx, buf);
        self.count(res)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.sock).poll_write_vectored(cx, bufs);
        self.count(res)
    }
    fn is_write_vectored(&self) -> bool {
        self.sock.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sock).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.sock).poll_shutdown(cx)
    }
}
