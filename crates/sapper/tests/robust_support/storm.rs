//! The storm: many connections, each sending a few generated frames and checking the
//! broker's reaction wherever one is owed (see [`Expect`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sapper_wire::frame::FrameReader;
use sapper_wire::kafka_protocol::messages::ApiKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::frames::{Expect, Generator, Kind};

/// Concurrent connections.
const WORKERS: usize = 32;
/// The storm stops sending here even if frames remain.
pub const BUDGET: Duration = Duration::from_secs(30);
/// How long to wait for "anything" after a frame whose fate is unknown.
const SHORT_READ: Duration = Duration::from_millis(25);
/// How long to wait for an answer or a close the broker owes us.
pub const OWED_READ: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct FuzzStats {
    pub frames: u64,
    pub connections: u64,
    pub connect_failures: u64,
    pub answered: u64,
    pub closed: u64,
    pub unanswered: u64,
    pub by_kind: BTreeMap<Kind, u64>,
    pub violation_count: u64,
    pub violations: Vec<String>,
}

impl FuzzStats {
    fn violation(&mut self, message: String) {
        self.violation_count += 1;
        if self.violations.len() < 20 {
            self.violations.push(message);
        }
    }

    fn merge(&mut self, other: FuzzStats) {
        self.frames += other.frames;
        self.connections += other.connections;
        self.connect_failures += other.connect_failures;
        self.answered += other.answered;
        self.closed += other.closed;
        self.unanswered += other.unanswered;
        for (kind, n) in other.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
        self.violation_count += other.violation_count;
        for v in other.violations {
            if self.violations.len() < 20 {
                self.violations.push(v);
            }
        }
    }
}

/// Sends `frames` frames (seeded by `seed`) over many connections within [`BUDGET`].
pub async fn run_fuzz(addr: SocketAddr, seed: u64, frames: usize) -> FuzzStats {
    let deadline = Instant::now() + BUDGET;
    let per_worker = frames.div_ceil(WORKERS);
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            tokio::spawn(fuzz_worker(
                addr,
                seed.wrapping_add(w as u64),
                per_worker,
                deadline,
            ))
        })
        .collect();
    let mut total = FuzzStats::default();
    for worker in workers {
        total.merge(worker.await.expect("fuzz worker"));
    }
    total
}

/// What reading after a frame found.
enum Reaction {
    Answer(Vec<u8>),
    Closed,
    Nothing,
}

async fn react(reader: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>, wait: Duration) -> Reaction {
    match tokio::time::timeout(wait, reader.read_frame()).await {
        Ok(Ok(Some(frame))) => Reaction::Answer(frame.to_vec()),
        // EOF, reset, or a torn response: the broker closed the connection.
        Ok(Ok(None) | Err(_)) => Reaction::Closed,
        Err(_) => Reaction::Nothing,
    }
}

/// Sends `frames` generated frames over short-lived connections, checking the broker's
/// reaction wherever it is owed (see [`Expect`]).
async fn fuzz_worker(addr: SocketAddr, seed: u64, frames: usize, deadline: Instant) -> FuzzStats {
    let mut generator = Generator::new(seed);
    let mut stats = FuzzStats::default();
    let mut sent = 0usize;
    while sent < frames && Instant::now() < deadline {
        let per_connection = 1 + generator.rng().below(12);
        let stream = match tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            _ => {
                stats.connect_failures += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stats.connections += 1;
        stream.set_nodelay(true).ok();
        let (read, mut write) = stream.into_split();
        let mut reader = FrameReader::new(read, 64 * 1024 * 1024);
        // Known state: every earlier frame on this connection got the reaction it was owed.
        let mut known = true;
        for _ in 0..per_connection {
            if sent >= frames {
                break;
            }
            let frame = generator.next_frame();
            sent += 1;
            stats.frames += 1;
            *stats.by_kind.entry(frame.kind).or_default() += 1;
            let written = tokio::time::timeout(Duration::from_secs(2), write.write_all(&frame.bytes)).await;
            if !matches!(written, Ok(Ok(()))) {
                // The broker closed the connection after an earlier frame.
                stats.closed += 1;
                break;
            }
            let expect = if known { frame.expect } else { Expect::Anything };
            let describe = |what: &str| {
                let api = frame
                    .bytes
                    .get(4..8)
                    .map(|b| (i16::from_be_bytes([b[0], b[1]]), i16::from_be_bytes([b[2], b[3]])))
                    .map(|(key, version)| match ApiKey::try_from(key) {
                        Ok(api) => format!("{api:?} v{version}"),
                        Err(()) => format!("key {key} v{version}"),
                    })
                    .unwrap_or_default();
                format!(
                    "{:?} frame, {api} ({} bytes), {what}: {:02x?}",
                    frame.kind,
                    frame.bytes.len(),
                    &frame.bytes[..frame.bytes.len().min(48)]
                )
            };
            match expect {
                Expect::Silence => {}
                Expect::Answer(id) => match react(&mut reader, OWED_READ).await {
                    Reaction::Answer(response) => {
                        stats.answered += 1;
                        let got = response
                            .get(..4)
                            .map(|b| i32::from_be_bytes(b.try_into().unwrap()));
                        if got != Some(id) {
                            stats.violation(describe(&format!(
                                "answered with correlation id {got:?}, expected {id}"
                            )));
                            break;
                        }
                    }
                    Reaction::Closed => {
                        stats.closed += 1;
                        stats.violation(describe("was owed an answer but the connection was closed"));
                        break;
                    }
                    Reaction::Nothing => {
                        stats.violation(describe("was owed an answer but got none within 5 s"));
                        break;
                    }
                },
                Expect::Close => match react(&mut reader, OWED_READ).await {
                    Reaction::Closed => {
                        stats.closed += 1;
                        break;
                    }
                    Reaction::Answer(_) => {
                        stats.answered += 1;
                        stats.violation(describe("should close the connection but was answered"));
                        break;
                    }
                    Reaction::Nothing => {
                        stats.violation(describe("should close the connection but it stayed open"));
                        break;
                    }
                },
                Expect::Anything => {
                    // Whatever happened, the byte stream is no longer known to be aligned.
                    known = false;
                    match react(&mut reader, SHORT_READ).await {
                        Reaction::Answer(_) => stats.answered += 1,
                        Reaction::Closed => {
                            stats.closed += 1;
                            break;
                        }
                        Reaction::Nothing => stats.unanswered += 1,
                    }
                }
            }
        }
    }
    stats
}
