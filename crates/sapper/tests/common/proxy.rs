//! A TCP proxy between a client and the broker that can break connections on command.
//!
//! The broker is started with `--advertised-listener` set to the proxy's address, so a client
//! that bootstraps through the proxy keeps using it for every connection (Metadata tells it
//! to). The proxy runs on its own tokio runtime; its handle is driven from plain threads.
//!
//! Cuts close both sides of every current connection. Two targeted cuts make the hard cases
//! likely instead of lucky:
//! - [`Cut::MidRequest`]: the next large chunk from a client (a Produce request) is forwarded
//!   only in part, then everything is cut: the broker sees a torn request.
//! - [`Cut::BeforeResponse`]: the next large chunk from a client is forwarded whole, and the
//!   next bytes the broker sends back on that connection are dropped, then everything is cut:
//!   the broker has appended, the client never learns it and must retry.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A client chunk at least this large is taken for a Produce request (Metadata, ApiVersions
/// and InitProducerId requests are far smaller).
const LARGE_CHUNK: usize = 1024;

/// How to break the current connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Close everything now, whatever is in flight.
    Now,
    /// Forward half of the next large client chunk, then close everything.
    MidRequest,
    /// Forward the next large client chunk, drop the broker's next bytes on that connection,
    /// then close everything.
    BeforeResponse,
}

/// A pending targeted cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Armed {
    Idle,
    MidRequest,
    BeforeResponse,
    /// A request went through on this connection; its response will be dropped.
    DropResponseOn(u64),
}

struct Shared {
    upstream: Mutex<Option<SocketAddr>>,
    /// Cancelled (and replaced) by each cut; every connection holds the one current when it
    /// was accepted.
    generation: Mutex<CancellationToken>,
    armed: Mutex<Armed>,
    refusing: AtomicBool,
    targeted_fired: AtomicU64,
    cuts: AtomicU64,
    accepted: AtomicU64,
    next_conn: AtomicU64,
}

impl Shared {
    fn cut_all(&self) {
        let fresh = CancellationToken::new();
        let old = std::mem::replace(
            &mut *self.generation.lock().unwrap_or_else(PoisonError::into_inner),
            fresh,
        );
        old.cancel();
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }

    fn armed(&self) -> std::sync::MutexGuard<'_, Armed> {
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The proxy handle. Dropping it shuts the proxy down.
pub struct TcpProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TcpProxy {
    /// Binds 127.0.0.1 on an ephemeral port and starts accepting. Connections accepted before
    /// [`TcpProxy::set_upstream`] are closed at once.
    pub fn bind() -> TcpProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("e2e-proxy")
            .enable_all()
            .build()
            .expect("building the proxy runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("binding the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream: Mutex::new(None),
            generation: Mutex::new(CancellationToken::new()),
            armed: Mutex::new(Armed::Idle),
            refusing: AtomicBool::new(false),
            targeted_fired: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            next_conn: AtomicU64::new(0),
        });
        runtime.spawn(accept_loop(listener, Arc::clone(&shared)));
        TcpProxy {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where new connections are forwarded.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self
            .shared
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(upstream);
    }

    /// Breaks the current connections as `cut` says. A targeted cut waits up to `wait` for
    /// matching traffic and falls back to cutting at once; returns whether the targeted case
    /// happened (always true for [`Cut::Now`]).
    pub fn cut(&self, cut: Cut, wait: Duration) -> bool {
        let armed = match cut {
            Cut::Now => {
                self.shared.cut_all();
                return true;
            }
            Cut::MidRequest => Armed::MidRequest,
            Cut::BeforeResponse => Armed::BeforeResponse,
        };
        let fired_before = self.shared.targeted_fired.load(Ordering::SeqCst);
        *self.shared.armed() = armed;
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.shared.targeted_fired.load(Ordering::SeqCst) > fired_before {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut state = self.shared.armed();
        if self.shared.targeted_fired.load(Ordering::SeqCst) > fired_before {
            return true;
        }
        *state = Armed::Idle;
        drop(state);
        self.shared.cut_all();
        false
    }

    /// Cuts everything and closes every connection accepted during the next `duration`, as a
    /// broker that is briefly unreachable would. Blocks for `duration`.
    pub fn refuse_for(&self, duration: Duration) {
        self.shared.refusing.store(true, Ordering::SeqCst);
        self.shared.cut_all();
        std::thread::sleep(duration);
        self.shared.refusing.store(false, Ordering::SeqCst);
    }

    /// Cuts performed so far (of any kind).
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.cut_all();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let upstream = *shared.upstream.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(upstream) = upstream else { continue };
        if shared.refusing.load(Ordering::SeqCst) {
            continue; // dropping the socket closes it
        }
        let token = shared
            .generation
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(serve(client, upstream, id, token, Arc::clone(&shared)));
    }
}

/// Forwards one connection until either side closes or a cut cancels `token`.
async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    id: u64,
    token: CancellationToken,
    shared: Arc<Shared>,
) {
    let server = tokio::select! {
        () = token.cancelled() => return,
        r = TcpStream::connect(upstream) => match r {
            Ok(s) => s,
            Err(_) => return,
        },
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either direction ending ends the connection: Kafka clients never half-close.
    tokio::select! {
        () = token.cancelled() => {}
        () = pump(client_read, server_write, Direction::ToBroker, id, &shared) => {}
        () = pump(server_read, client_write, Direction::ToClient, id, &shared) => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToBroker,
    ToClient,
}

/// What to do with one chunk read from a socket.
enum Action {
    Forward,
    /// Forward this many bytes, then cut everything.
    ForwardPartThenCut(usize),
}

fn decide(shared: &Shared, direction: Direction, id: u64, len: usize) -> Action {
    let mut armed = shared.armed();
    match (*armed, direction) {
        (Armed::MidRequest, Direction::ToBroker) if len >= LARGE_CHUNK => {
            *armed = Armed::Idle;
            Action::ForwardPartThenCut(len / 2)
        }
        (Armed::BeforeResponse, Direction::ToBroker) if len >= LARGE_CHUNK => {
            *armed = Armed::DropResponseOn(id);
            Action::Forward
        }
        (Armed::DropResponseOn(conn), Direction::ToClient) if conn == id => {
            *armed = Armed::Idle;
            Action::ForwardPartThenCut(0)
        }
        _ => Action::Forward,
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    direction: Direction,
    id: u64,
    shared: &Shared,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = buf.get(..n).unwrap_or_default();
        match decide(shared, direction, id, n) {
            Action::Forward => {
                if to.write_all(chunk).await.is_err() {
                    return;
                }
            }
            Action::ForwardPartThenCut(part) => {
                let _ = to.write_all(chunk.get(..part).unwrap_or_default()).await;
                let _ = to.flush().await;
                shared.targeted_fired.fetch_add(1, Ordering::SeqCst);
                shared.cut_all();
                return;
            }
        }
    }
}
