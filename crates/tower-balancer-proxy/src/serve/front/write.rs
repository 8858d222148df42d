//! Writing an answer to a request the server read itself: its head by hand, its body by its
//! length or chunked, with hyper's rules for which answers have a body.
//!
//! Why by hand: hyper's server encodes a head through a general encoder (original header
//! case, trailers, HTTP/1.0, informational answers) and buffers the body through its own
//! queue; the common answer needs one buffer and one write.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, TRANSFER_ENCODING};
use http::response::Parts;
use http::{HeaderMap, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tower_balancer::BoxError;

use super::super::status::{body_failed_page, page_text};
use super::date::put_date;

/// Body bytes up to this size are copied behind the head and sent in one write.
const COPY_LIMIT: usize = 16 * 1024;

/// How the body is framed to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body bytes at all (`HEAD`, 204, 304).
    None,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Writes an answer of `parts` and `body` for a request (`head`: it was `HEAD`); `keep`: the
/// connection may serve another request. `Ok(true)` when it may: the answer went out whole
/// and nothing in it closes the connection.
///
/// # Errors
/// A write failed, or the body failed or did not match its length: the connection must be
/// closed.
pub(crate) async fn respond<IO, B>(
    io: &mut IO,
    out: &mut Vec<u8>,
    parts: &Parts,
    mut body: Pin<&mut B>,
    head: bool,
    keep: bool,
) -> io::Result<bool>
where
    IO: AsyncWrite + Unpin,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let (framing, keep) = write_head(out, parts, &*body, head, keep);
    let mut io = Sent { io, any: false };
    let whole = match framing {
        Framing::None => Ok(true),
        Framing::Length(n) => body_by_length(&mut io, out, &mut body, n).await,
        Framing::Chunked => body_chunked(&mut io, out, &mut body).await,
    };
    let failed = match &whole {
        Ok(whole) => !whole,
        Err(e) => matches!(e.get_ref(), Some(inner) if inner.is::<BodyFailed>()),
    };
    if failed && !io.any {
        // the body failed or ended short before any of the answer went out: the client is
        // told the member failed, as when it fails before its head, rather than seeing the
        // connection close with no answer or an answer cut short
        bad_gateway(out, parts);
        io.write_all(out).await?;
        io.flush().await?;
        return Ok(false);
    }
    let whole = whole?;
    io.write_all(out).await?;
    io.flush().await?;
    Ok(keep && whole)
}

/// The answer's body failed (the member's side of the exchange, not the client's socket).
#[derive(Debug, thiserror::Error)]
#[error("the answer's body failed")]
struct BodyFailed(#[source] BoxError);

/// The client's socket, noting whether any byte of the answer went out on it.
struct Sent<'a, IO> {
    io: &'a mut IO,
    any: bool,
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Sent<'_, IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut *self.io).poll_write(cx, buf))?;
        self.any |= n > 0;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut *self.io).poll_write_vectored(cx, bufs))?;
        self.any |= n > 0;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

/// The page for an answer whose body failed before any of it was sent: the server's page
/// for a member's failure (`serve::status`), with the request's id if the answer carried
/// one, and the connection closed after it.
fn bad_gateway(out: &mut Vec<u8>, answer: &Parts) {
    let (parts, body) = body_failed_page::<Empty<Bytes>>(answer).into_parts();
    write_head(out, &parts, &body, false, false);
    out.extend_from_slice(page_text(parts.status).as_bytes());
}

/// What one pass over an answer's fields found.
#[derive(Default)]
struct Found {
    /// `Content-Length`: `Some(Some(n))` when every one says `n`.
    length: Option<Option<u64>>,
    connection: bool,
    close: bool,
    date: bool,
}

/// Writes the head into `out` (cleared first) with hyper's rules for which answers have a
/// body: none for `HEAD`, 204 and 304; its own length, the body's exact size, or chunked.
fn write_head<B: Body>(
    out: &mut Vec<u8>,
    parts: &Parts,
    body: &B,
    head: bool,
    mut keep: bool,
) -> (Framing, bool) {
    let mut status = parts.status;
    if status.is_informational() {
        // as hyper: a 1xx is never a final answer
        status = StatusCode::INTERNAL_SERVER_ERROR;
        keep = false;
    }
    out.clear();
    status_line(out, status);
    let found = fields(
        out,
        &parts.headers,
        head && status != StatusCode::NO_CONTENT,
    );
    keep &= !found.close;
    let no_content = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    if head && !no_content && found.length.is_none() {
        // as hyper: a HEAD answer says the length its GET would have, when it is known
        if let Some(n) = body.size_hint().exact().filter(|&n| n > 0) {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(digits(n, 10, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
    }
    let framing = if head || no_content {
        Framing::None
    } else if body.is_end_stream() {
        Framing::Length(0)
    } else if let Some(Some(n)) = found.length {
        Framing::Length(n)
    } else if let Some(n) = body.size_hint().exact() {
        Framing::Length(n)
    } else {
        Framing::Chunked
    };
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(digits(n, 10, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {}
    }
    if !keep && !found.connection {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if !found.date {
        put_date(out);
    }
    out.extend_from_slice(b"\r\n");
    (framing, keep)
}

fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Writes the answer's fields but its framing (written from [`Framing`]), keeping a `HEAD`
/// answer's `Content-Length` (`keep_length`), in one pass that notes what the head needs.
fn fields(out: &mut Vec<u8>, headers: &HeaderMap, keep_length: bool) -> Found {
    let mut found = Found::default();
    for (name, value) in headers {
        if *name == TRANSFER_ENCODING {
            continue;
        }
        if *name == CONTENT_LENGTH {
            let n = value.to_str().ok().and_then(|v| v.parse::<u64>().ok());
            found.length = match found.length {
                None => Some(n),
                Some(before) => Some(before.filter(|_| before == n)),
            };
            if !keep_length {
                continue;
            }
        } else if *name == CONNECTION {
            found.connection = true;
            found.close |= value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if *name == DATE {
            found.date = true;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    found
}

/// `n` in `radix` (10, or 16 in upper case as hyper writes chunk sizes), in `buf`: no
/// formatting machinery and no allocation, once an answer and once a chunk.
fn digits(mut n: u64, radix: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789ABCDEF"[(n % radix) as usize];
        n /= radix;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// The next data frame; trailers are skipped. `out` is written first when the body has
/// nothing ready, so the client is not kept waiting for what is already here.
async fn next_data<IO, B>(io: &mut IO, out: &mut Vec<u8>, body: &mut B) -> io::Result<Option<Bytes>>
where
    IO: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    loop {
        let ready = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut *body).poll_frame(cx))
        })
        .await;
        let frame = match ready {
            std::task::Poll::Ready(frame) => frame,
            std::task::Poll::Pending => {
                if !out.is_empty() {
                    io.write_all(out).await?;
                    io.flush().await?;
                    out.clear();
                }
                body.frame().await
            }
        };
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(io::Error::other(BodyFailed(e.into()))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if data.has_remaining() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

/// Sends `data` after `out`: copied behind it when small, else both in one vectored write.
async fn put<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Vec<u8>,
    data: Bytes,
) -> io::Result<()> {
    if data.len() <= COPY_LIMIT {
        out.extend_from_slice(&data);
        if out.len() > COPY_LIMIT {
            io.write_all(out).await?;
            out.clear();
        }
        return Ok(());
    }
    let mut chain = (&out[..]).chain(data);
    while chain.has_remaining() {
        let mut slices = [io::IoSlice::new(&[]); 2];
        let n = chain.chunks_vectored(&mut slices);
        let written = io.write_vectored(&slices[..n]).await?;
        if written == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        chain.advance(written);
    }
    out.clear();
    Ok(())
}

/// The body by `Content-Length`: `Ok(false)` if it ended short (the client then sees the
/// connection close), an error if it ran over.
async fn body_by_length<IO, B>(
    io: &mut IO,
    out: &mut Vec<u8>,
    body: &mut B,
    n: u64,
) -> io::Result<bool>
where
    IO: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut left = n;
    while let Some(data) = next_data(io, out, body).await? {
        let len = data.len() as u64;
        if len > left {
            return Err(io::Error::other(BodyFailed(
                "the answer's body is longer than its length".into(),
            )));
        }
        left -= len;
        put(io, out, data).await?;
    }
    Ok(left == 0)
}

/// The body chunked.
async fn body_chunked<IO, B>(io: &mut IO, out: &mut Vec<u8>, body: &mut B) -> io::Result<bool>
where
    IO: AsyncWrite + Unpin,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    while let Some(data) = next_data(io, out, body).await? {
        out.extend_from_slice(digits(data.len() as u64, 16, &mut [0; 20]));
        out.extend_from_slice(b"\r\n");
        put(io, out, data).await?;
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    Ok(true)
}

#[cfg(test)]
#[path = "write_tests.rs"]
mod tests;
