//! An HTTP/2 client written frame by frame, for the tests that send what no well-behaved
//! client library would (floods, paced resets), and see every frame the server sends back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A frame's 9-byte head.
pub(crate) fn frame_head(len: usize, kind: u8, flags: u8, stream: u32) -> Vec<u8> {
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f
}

/// A prior-knowledge connection's start: the preface, `SETTINGS` giving every stream
/// `stream_window` bytes of window, and a `WINDOW_UPDATE` raising the connection's window
/// to the most HTTP/2 allows.
pub(crate) fn preface(stream_window: u32) -> Vec<u8> {
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    start.extend(frame_head(6, 0x4, 0, 0));
    start.extend_from_slice(&[0, 4]);
    start.extend_from_slice(&stream_window.to_be_bytes());
    start.extend(frame_head(4, 0x8, 0, 0));
    start.extend_from_slice(&0x7fff_0000u32.to_be_bytes());
    start
}

/// A `GET path` of `lb.test` on `stream`: one `HEADERS` frame that ends the stream.
pub(crate) fn get(stream: u32, path: &str) -> Vec<u8> {
    // :method GET, :scheme http, :path (literal), :authority lb.test (literal)
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend_from_slice(path.as_bytes());
    block.extend_from_slice(&[0x01, 7]);
    block.extend_from_slice(b"lb.test");
    let mut f = frame_head(block.len(), 0x1, 0x5, stream);
    f.extend(block);
    f
}

/// `RST_STREAM` (CANCEL) for each of `streams`.
pub(crate) fn cancel(streams: impl Iterator<Item = u32>) -> Vec<u8> {
    let mut out = Vec::new();
    for id in streams {
        out.extend(frame_head(4, 0x3, 0, id));
        out.extend_from_slice(&8u32.to_be_bytes());
    }
    out
}

/// What the client saw of the server's frames.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Each `GOAWAY`: when, its last stream and its error code.
    pub(crate) goaways: Vec<(Instant, u32, u32)>,
    /// The data each stream got, and when it ended.
    pub(crate) data: HashMap<u32, Vec<u8>>,
    pub(crate) ended: HashMap<u32, Instant>,
    /// When the server closed the connection.
    pub(crate) closed: Option<Instant>,
    /// The server's `SETTINGS`, by identifier, as last sent.
    pub(crate) settings: HashMap<u16, u32>,
    /// Each `RST_STREAM`'s error code, by stream.
    pub(crate) resets: HashMap<u32, u32>,
}

/// A connection: its write half, and what a task reading its other half saw.
pub(crate) struct Conn {
    pub(crate) write: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    pub(crate) seen: Arc<Mutex<Seen>>,
}

impl Conn {
    /// Connects to `lb` with prior knowledge (the preface and an empty `SETTINGS` sent);
    /// answers the server's `PING`s as a client library does when `pings`, and not, as a
    /// client that ignores the server, otherwise.
    pub(crate) async fn open(lb: SocketAddr, pings: bool) -> Self {
        let (read, write) = TcpStream::connect(lb).await.unwrap().into_split();
        let conn = Self {
            write: Arc::new(tokio::sync::Mutex::new(write)),
            seen: Arc::default(),
        };
        let write = pings.then(|| conn.write.clone());
        tokio::spawn(read_frames(read, write, conn.seen.clone()));
        let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        start.extend(frame_head(0, 0x4, 0, 0));
        conn.send(&start).await.unwrap();
        conn
    }

    /// Writes `bytes`; an error once the server closed the connection.
    pub(crate) async fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.write.lock().await.write_all(bytes).await
    }

    /// Whether a `GOAWAY` came.
    pub(crate) fn gone_away(&self) -> bool {
        !self.seen.lock().unwrap().goaways.is_empty()
    }

    /// Whether the server closed the connection.
    pub(crate) fn closed(&self) -> bool {
        self.seen.lock().unwrap().closed.is_some()
    }
}

/// Reads the server's frames into `seen`, answering its `PING`s on `write` if given.
async fn read_frames(
    mut read: OwnedReadHalf,
    write: Option<Arc<tokio::sync::Mutex<OwnedWriteHalf>>>,
    seen: Arc<Mutex<Seen>>,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    loop {
        let n = read.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            seen.lock().unwrap().closed = Some(Instant::now());
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let (kind, flags) = (buf[3], buf[4]);
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            let payload: Vec<u8> = buf.drain(..9 + len).skip(9).collect();
            let mut s = seen.lock().unwrap();
            match kind {
                0x0 => {
                    s.data
                        .entry(stream)
                        .or_default()
                        .extend_from_slice(&payload);
                    if flags & 0x1 != 0 {
                        s.ended.insert(stream, Instant::now());
                    }
                }
                0x3 if payload.len() == 4 => {
                    let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    s.resets.insert(stream, code);
                }
                0x4 if flags & 0x1 == 0 => {
                    for one in payload.chunks_exact(6) {
                        let id = u16::from_be_bytes([one[0], one[1]]);
                        s.settings
                            .insert(id, u32::from_be_bytes([one[2], one[3], one[4], one[5]]));
                    }
                }
                0x6 if flags & 0x1 == 0 => {
                    if let Some(write) = &write {
                        let mut ack = frame_head(8, 0x6, 0x1, 0);
                        ack.extend_from_slice(&payload);
                        let write = write.clone();
                        tokio::spawn(async move { write.lock().await.write_all(&ack).await });
                    }
                }
                0x7 => {
                    let word = |i: usize| {
                        u32::from_be_bytes([
                            payload[i],
                            payload[i + 1],
                            payload[i + 2],
                            payload[i + 3],
                        ])
                    };
                    s.goaways
                        .push((Instant::now(), word(0) & 0x7fff_ffff, word(4)));
                }
                _ => {}
            }
        }
    }
}
