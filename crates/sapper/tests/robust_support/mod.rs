//! Helpers for the robustness test: a broker child process, a seeded RNG and a CRC32C (so
//! crafted record batches pass the broker's checksum), plus the frame generator
//! ([`frames`]) over real requests ([`requests`]), the connections that send them
//! ([`storm`]) and the well-behaved librdkafka client ([`good_client`]).

pub mod frames;
pub mod good_client;
pub mod requests;
pub mod storm;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A `sapper broker` child process on 127.0.0.1, killed when dropped.
pub struct BrokerProcess {
    child: Child,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<u8>>>,
    extra_stdout: Arc<Mutex<Vec<String>>>,
    _data_dir: tempfile::TempDir,
}

impl BrokerProcess {
    /// Starts a broker with a fresh data directory and waits for its "listening" line.
    pub fn start() -> Self {
        Self::start_with_address_space_limit(None)
    }

    /// Like [`BrokerProcess::start`], with `ulimit -v` (KiB) applied to the broker when given:
    /// the way to see an allocation failure that overcommit would otherwise hide.
    pub fn start_with_address_space_limit(limit_kib: Option<u64>) -> Self {
        let data_dir = tempfile::tempdir().expect("temp data dir");
        let mut command = match limit_kib {
            None => Command::new(env!("CARGO_BIN_EXE_sapper")),
            Some(kib) => {
                let mut c = Command::new("bash");
                c.args(["-c", &format!("ulimit -v {kib} && exec \"$0\" \"$@\"")])
                    .arg(env!("CARGO_BIN_EXE_sapper"));
                c
            }
        };
        let mut child = command
            .args([
                "broker",
                "--node-id",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir.path())
            // Retention runs often, so segments of the fuzz topic with tiny segments and a
            // short retention are deleted while other connections fetch from them.
            .args(["--retention-check-interval-ms", "500"])
            .env("SAPPER_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sapper broker");

        // Drain stderr continuously so the pipe never fills and blocks the broker.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr pipe");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 64 * 1024];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });

        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout pipe");
        let extra_stdout = Arc::new(Mutex::new(Vec::new()));
        let extra = extra_stdout.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for line in lines.map_while(Result::ok) {
                extra.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "broker did not report its address ({e}); stderr:\n{}",
                    String::from_utf8_lossy(&stderr.lock().unwrap())
                );
            }
        };
        let addr = line
            .strip_prefix("sapper: listening on ")
            .and_then(|a| a.trim().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"));
        Self {
            child,
            addr,
            stderr,
            extra_stdout,
            _data_dir: data_dir,
        }
    }

    /// True while the process has not exited.
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Lines printed to stdout after the "listening" line (there should be none).
    pub fn extra_stdout(&self) -> Vec<String> {
        self.extra_stdout.lock().unwrap().clone()
    }

    /// Peak resident set size (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// xorshift64* with a splitmix64-scrambled seed: tiny, deterministic, good enough to fuzz.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self((z ^ (z >> 31)) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo) as u64 + 1)) as i64
    }
    pub fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// CRC-32C (Castagnoli), bit by bit: the checksum of Kafka record batches.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
