//! A small authoritative DNS server on loopback whose records a test changes while it runs:
//! UDP and TCP, truncation of UDP answers over 512 bytes, and failure modes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// From the records.
    Normal,
    /// SERVFAIL to everything.
    ServFail,
    /// No answer at all (the resolver times out).
    Silent,
}

#[derive(Default)]
struct Zone {
    records: HashMap<(String, RecordType), Vec<Record>>,
}

/// A running server; dropping it stops nothing (the test runtime ends it).
#[derive(Clone)]
pub(crate) struct DnsServer {
    zone: Arc<Mutex<Zone>>,
    mode: Arc<Mutex<Mode>>,
    queries: Arc<AtomicU64>,
    tcp_queries: Arc<AtomicU64>,
    pub(crate) addr: SocketAddr,
}

fn key(name: &str, t: RecordType) -> (String, RecordType) {
    let mut n = name.to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    (n, t)
}

impl DnsServer {
    pub(crate) async fn start() -> Self {
        // UDP and TCP on one port: the UDP port's TCP twin may be some connection's
        // ephemeral port (a busy machine), so try other ports until both are free
        let mut tries = 0;
        let (udp, tcp, addr) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            match TcpListener::bind(addr).await {
                Ok(tcp) => break (udp, tcp, addr),
                Err(_) if tries < 50 => tries += 1,
                Err(e) => panic!("no port free for both UDP and TCP: {e}"),
            }
        };
        let server = Self {
            zone: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Normal)),
            queries: Arc::default(),
            tcp_queries: Arc::default(),
            addr,
        };
        let s = server.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
                    return;
                };
                if let Some(mut out) = s.answer(&buf[..n]) {
                    if out.len() > 512 {
                        out = s.truncated(&buf[..n]);
                    }
                    let _ = udp.send_to(&out, peer).await;
                }
            }
        });
        let s = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = tcp.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok(len) = conn.read_u16().await else {
                            return;
                        };
                        let mut msg = vec![0u8; usize::from(len)];
                        if conn.read_exact(&mut msg).await.is_err() {
                            return;
                        }
                        s.tcp_queries.fetch_add(1, Ordering::Relaxed);
                        let Some(out) = s.answer(&msg) else { return };
                        let Ok(len) = u16::try_from(out.len()) else {
                            return;
                        };
                        if conn.write_u16(len).await.is_err() || conn.write_all(&out).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        server
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub(crate) fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    pub(crate) fn tcp_queries(&self) -> u64 {
        self.tcp_queries.load(Ordering::Relaxed)
    }

    /// Replaces the A and AAAA records of `name`.
    pub(crate) fn set_addresses(&self, name: &str, ttl: u32, ips: &[IpAddr]) {
        let owner = Name::from_ascii(name).unwrap();
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for ip in ips {
            match ip {
                IpAddr::V4(a) => v4.push(Record::from_rdata(owner.clone(), ttl, RData::A(A(*a)))),
                IpAddr::V6(a) => v6.push(Record::from_rdata(
                    owner.clone(),
                    ttl,
                    RData::AAAA(AAAA(*a)),
                )),
            }
        }
        let mut z = self.zone.lock().unwrap();
        z.records.insert(key(name, RecordType::A), v4);
        z.records.insert(key(name, RecordType::AAAA), v6);
    }

    /// Replaces the SRV records of `name`: (priority, weight, port, target).
    pub(crate) fn set_srv(&self, name: &str, ttl: u32, targets: &[(u16, u16, u16, &str)]) {
        let owner = Name::from_ascii(name).unwrap();
        let records = targets
            .iter()
            .map(|(p, w, port, t)| {
                let srv = SRV::new(*p, *w, *port, Name::from_ascii(t).unwrap());
                Record::from_rdata(owner.clone(), ttl, RData::SRV(srv))
            })
            .collect();
        self.zone
            .lock()
            .unwrap()
            .records
            .insert(key(name, RecordType::SRV), records);
    }

    fn answer(&self, query: &[u8]) -> Option<Vec<u8>> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let mode = *self.mode.lock().unwrap();
        if mode == Mode::Silent {
            return None;
        }
        let q = Message::from_vec(query).ok()?;
        let mut r = Message::response(q.metadata.id, q.metadata.op_code);
        r.metadata.authoritative = true;
        r.metadata.recursion_desired = q.metadata.recursion_desired;
        for question in &q.queries {
            r.add_query(question.clone());
            if mode == Mode::ServFail {
                r.metadata.response_code = ResponseCode::ServFail;
                continue;
            }
            let z = self.zone.lock().unwrap();
            let k = key(&question.name().to_ascii(), question.query_type());
            match z.records.get(&k) {
                Some(records) => {
                    for rec in records {
                        r.add_answer(rec.clone());
                    }
                }
                None => {
                    let known = z.records.keys().any(|(n, _)| *n == k.0);
                    if !known {
                        r.metadata.response_code = ResponseCode::NXDomain;
                    }
                }
            }
        }
        r.to_vec().ok()
    }

    fn truncated(&self, query: &[u8]) -> Vec<u8> {
        let q = Message::from_vec(query).unwrap();
        let mut r = Message::response(q.metadata.id, q.metadata.op_code);
        r.metadata.truncation = true;
        r.metadata.authoritative = true;
        for question in &q.queries {
            r.add_query(question.clone());
        }
        r.to_vec().unwrap()
    }
}
