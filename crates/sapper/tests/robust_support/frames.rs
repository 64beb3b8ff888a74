//! The hostile-frame generator.
//!
//! Every frame carries the broker's expected reaction when it is sent on a connection that is
//! still in a known state (all earlier frames got what they were owed): an answer with its
//! correlation id, a closed connection, silence (acks=0), or "anything" for frames whose fate
//! depends on where a mutation landed.

use sapper_wire::api::{SupportedApi, SUPPORTED_APIS};
use sapper_wire::codec::{decode_body, decode_header};
use sapper_wire::frame::DEFAULT_MAX_FRAME_BYTES;
use sapper_wire::kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreateTopicsRequest};

use super::requests::{encode_body, encode_header, Reply};
use super::Rng;

/// What the broker must do with a frame sent on a connection in a known state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A response frame carrying this correlation id.
    Answer(i32),
    /// The connection is closed without an answer.
    Close,
    /// No answer, connection kept (Produce with acks=0).
    Silence,
    /// Depends on where a mutation landed; only "no crash" is required.
    Anything,
}

/// The families of frames the generator makes, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    RandomBytes,
    RandomBody,
    HeaderRandomBody,
    HeaderTruncatedBody,
    Mutated,
    Intact,
    BadPrefix,
    UnsupportedVersion,
    UnknownApi,
}

/// One frame to write, already length-prefixed (or deliberately not).
#[derive(Debug)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub expect: Expect,
    pub kind: Kind,
}

fn prefixed(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Known API keys the broker does not serve (group, transaction, ACL, ... APIs).
fn unserved_known_keys() -> Vec<i16> {
    (0..=80i16)
        .filter(|&k| ApiKey::try_from(k).is_ok_and(|api| sapper_wire::api::supported(api).is_none()))
        .collect()
}

/// Makes hostile frames, deterministically from its seed.
pub struct Generator {
    rng: Rng,
    next_correlation_id: i32,
    names: u32,
    unserved: Vec<i16>,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: Rng::new(seed),
            next_correlation_id: 1,
            names: 0,
            unserved: unserved_known_keys(),
        }
    }

    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    fn correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        id
    }

    fn client_id(&mut self) -> Option<&'static str> {
        self.rng.pick(&[Some("fuzz"), None, Some(""), Some("rdkafka")])
    }

    /// A served API, with the data path (Produce, Fetch) drawn more often than the rest.
    fn served(&mut self) -> SupportedApi {
        let favoured: Vec<SupportedApi> = SUPPORTED_APIS
            .iter()
            .copied()
            .filter(|a| matches!(a.key, ApiKey::Produce | ApiKey::Fetch))
            .collect();
        if !favoured.is_empty() && self.rng.percent(25) {
            self.rng.pick(&favoured)
        } else {
            self.rng.pick(SUPPORTED_APIS)
        }
    }

    /// Header + real body for `api` at `version`, with the expected reaction.
    fn real_request(&mut self, api: ApiKey, version: i16) -> Option<(Vec<u8>, Expect)> {
        let correlation_id = self.correlation_id();
        let client_id = self.client_id();
        let (body, reply) = encode_body(&mut self.rng, api, version, &mut self.names)?;
        let mut payload = encode_header(api as i16, version, correlation_id, client_id);
        payload.extend_from_slice(&body);
        let expect = match reply {
            Reply::Now => Expect::Answer(correlation_id),
            Reply::Never => Expect::Silence,
            Reply::Eventually => Expect::Anything,
        };
        Some((payload, expect))
    }

    pub fn next_frame(&mut self) -> Frame {
        // A few combinations (e.g. a body the codec refuses at a version) yield nothing;
        // drawing again is bounded because pure random bytes always succeed.
        for _ in 0..16 {
            match self.try_frame() {
                Some(frame) if !frame.bytes.get(4..).is_some_and(creates_many_partitions) => return frame,
                _ => {}
            }
        }
        let n = 1 + self.rng.below(64);
        Frame {
            bytes: self.rng.bytes(n),
            expect: Expect::Anything,
            kind: Kind::RandomBytes,
        }
    }

    fn try_frame(&mut self) -> Option<Frame> {
        let roll = self.rng.below(100);
        let frame = match roll {
            // Pure random bytes, no framing at all.
            0..=6 => {
                let n = 1 + self.rng.below(300);
                Frame {
                    bytes: self.rng.bytes(n),
                    expect: Expect::Anything,
                    kind: Kind::RandomBytes,
                }
            }
            // A valid length prefix around random bytes.
            7..=15 => {
                let n = self.rng.below(400);
                Frame {
                    bytes: prefixed(&self.rng.bytes(n)),
                    expect: Expect::Anything,
                    kind: Kind::RandomBody,
                }
            }
            // A correct header for a served API and version, then random bytes.
            16..=25 => {
                let served = self.served();
                let version = self.rng.range(i64::from(served.min), i64::from(served.max)) as i16;
                let correlation_id = self.correlation_id();
                let client_id = self.client_id();
                let mut payload = encode_header(served.key as i16, version, correlation_id, client_id);
                let n = self.rng.below(200);
                payload.extend(self.rng.bytes(n));
                Frame {
                    bytes: prefixed(&payload),
                    expect: Expect::Anything,
                    kind: Kind::HeaderRandomBody,
                }
            }
            // A correct header and a real body cut short: the body cannot decode, so the
            // connection must close (ApiVersions bodies are not decoded: it is answered).
            26..=33 => {
                let served = self.served();
                let version = self.rng.range(i64::from(served.min), i64::from(served.max)) as i16;
                let correlation_id = self.correlation_id();
                let client_id = self.client_id();
                let header = encode_header(served.key as i16, version, correlation_id, client_id);
                let (body, _) = encode_body(&mut self.rng, served.key, version, &mut self.names)?;
                if body.is_empty() {
                    return None;
                }
                let keep = self.rng.below(body.len());
                let mut payload = header;
                payload.extend_from_slice(&body[..keep]);
                let expect = if served.key == ApiKey::ApiVersions {
                    Expect::Answer(correlation_id)
                } else {
                    Expect::Close
                };
                Frame {
                    bytes: prefixed(&payload),
                    expect,
                    kind: Kind::HeaderTruncatedBody,
                }
            }
            // A real request, mutated.
            34..=71 => {
                let served = self.served();
                let version = self.rng.range(i64::from(served.min), i64::from(served.max)) as i16;
                let (payload, _) = self.real_request(served.key, version)?;
                let payload = self.mutate(payload);
                let bytes = if self.rng.percent(90) {
                    prefixed(&payload)
                } else {
                    // A prefix that disagrees with the body by a little.
                    let delta = self.rng.range(-8, 8) as i32;
                    let mut out = (payload.len() as i32 + delta).to_be_bytes().to_vec();
                    out.extend_from_slice(&payload);
                    out
                };
                Frame {
                    bytes,
                    expect: Expect::Anything,
                    kind: Kind::Mutated,
                }
            }
            // A real, intact request: must be answered (or, for acks=0, not).
            72..=83 => {
                let served = self.served();
                let version = self.rng.range(i64::from(served.min), i64::from(served.max)) as i16;
                let (payload, expect) = self.real_request(served.key, version)?;
                Frame {
                    bytes: prefixed(&payload),
                    expect,
                    kind: Kind::Intact,
                }
            }
            // Length prefixes that are negative, zero, or beyond socket.request.max.bytes:
            // closed at once, before any buffer grows. Rarely, exactly the limit (allowed:
            // the broker waits for the body that never comes).
            84..=88 => {
                let limit = DEFAULT_MAX_FRAME_BYTES as i64;
                let (size, expect) = match self.rng.below(9) {
                    0 => (i64::from(i32::MAX), Expect::Close),
                    1 => (i64::from(i32::MIN), Expect::Close),
                    2 => (-1, Expect::Close),
                    3 => (0, Expect::Close),
                    4 => (limit + 1, Expect::Close),
                    5 => (0x4000_0000, Expect::Close),
                    6 => (self.rng.range(limit + 1, i64::from(i32::MAX)), Expect::Close),
                    7 => (limit, Expect::Anything),
                    _ => (self.rng.range(500, 1 << 20), Expect::Anything),
                };
                let mut bytes = (size as i32).to_be_bytes().to_vec();
                let n = self.rng.below(64);
                bytes.extend(self.rng.bytes(n));
                Frame {
                    bytes,
                    expect,
                    kind: Kind::BadPrefix,
                }
            }
            // A served API at a version we do not serve.
            89..=94 => {
                let served = self.served();
                let codec = served.key.valid_versions();
                let between = self.rng.range(i64::from(served.max), i64::from(codec.max)) as i16;
                let version = self.rng.pick(&[
                    served.max + 1,
                    between,
                    codec.max,
                    codec.max + 1,
                    served.min - 1,
                    -1,
                    99,
                    i16::MAX,
                    i16::MIN,
                ]);
                if (served.min..=served.max).contains(&version) {
                    return None;
                }
                let in_codec = (codec.min..=codec.max).contains(&version);
                let correlation_id = self.correlation_id();
                let client_id = self.client_id();
                let body_version = version.clamp(served.min, codec.max);
                let (body, reply) = encode_body(&mut self.rng, served.key, body_version, &mut self.names)?;
                let mut payload = encode_header(served.key as i16, version, correlation_id, client_id);
                payload.extend_from_slice(&body);
                let expect = if served.key == ApiKey::ApiVersions {
                    // Any version: a v0 answer with UNSUPPORTED_VERSION and our ranges.
                    Expect::Answer(correlation_id)
                } else if in_codec {
                    // Decodable: answered at once with UNSUPPORTED_VERSION in the asked shape
                    // (still silence for acks=0).
                    if reply == Reply::Never {
                        Expect::Silence
                    } else {
                        Expect::Answer(correlation_id)
                    }
                } else {
                    Expect::Close
                };
                Frame {
                    bytes: prefixed(&payload),
                    expect,
                    kind: Kind::UnsupportedVersion,
                }
            }
            // API keys we do not serve or that do not exist.
            _ => {
                let key = if self.rng.percent(50) {
                    let unserved = self.unserved.clone();
                    self.rng.pick(&unserved)
                } else {
                    self.rng
                        .pick(&[-1i16, 100, 999, i16::MAX, i16::MIN, 0x7f00, 81, 200])
                };
                let version = self.rng.range(-1, 12) as i16;
                let correlation_id = self.correlation_id();
                let client_id = self.client_id();
                let mut payload = encode_header(key, version, correlation_id, client_id);
                let n = self.rng.below(64);
                payload.extend(self.rng.bytes(n));
                Frame {
                    bytes: prefixed(&payload),
                    expect: Expect::Close,
                    kind: Kind::UnknownApi,
                }
            }
        };
        Some(frame)
    }

    /// One to four mutations, biased towards the places decoders trust: counts and lengths.
    fn mutate(&mut self, mut data: Vec<u8>) -> Vec<u8> {
        for _ in 0..=self.rng.below(4) {
            let len = data.len();
            match self.rng.below(10) {
                // Flip a few bytes.
                0 | 1 => {
                    for _ in 0..=self.rng.below(3) {
                        if !data.is_empty() {
                            let i = self.rng.below(data.len());
                            data[i] ^= (self.rng.next_u64() as u8) | 1;
                        }
                    }
                }
                // Truncate.
                2 => data.truncate(self.rng.below(len + 1)),
                // Extend with garbage.
                3 => {
                    let n = 1 + self.rng.below(64);
                    data.extend(self.rng.bytes(n));
                }
                // Overwrite a big-endian i32 that looks like a small count with a huge or
                // negative one (array counts, byte lengths).
                4 | 5 => {
                    let candidates: Vec<usize> = (0..len.saturating_sub(3))
                        .filter(|&i| {
                            data[i] == 0
                                && data[i + 1] == 0
                                && data[i + 2] == 0
                                && (1..=8).contains(&data[i + 3])
                        })
                        .collect();
                    if !candidates.is_empty() {
                        let i = self.rng.pick(&candidates);
                        let huge = self
                            .rng
                            .pick(&[i32::MAX, -2, i32::MIN, 0x00ff_ffff, 1 << 30, 65_536]);
                        data[i..i + 4].copy_from_slice(&huge.to_be_bytes());
                    }
                }
                // Overwrite an i16 string length with a negative one (other than -1 = null).
                6 => {
                    let candidates: Vec<usize> = (0..len.saturating_sub(2))
                        .filter(|&i| {
                            data[i] == 0 && (1..=40).contains(&data[i + 1]) && data[i + 2].is_ascii_graphic()
                        })
                        .collect();
                    if !candidates.is_empty() {
                        let i = self.rng.pick(&candidates);
                        let negative = self.rng.pick(&[-2i16, i16::MIN, -100, i16::MAX]);
                        data[i..i + 2].copy_from_slice(&negative.to_be_bytes());
                    }
                }
                // A huge unsigned varint where a compact count or length may be.
                7 => {
                    let candidates: Vec<usize> = (0..len).filter(|&i| (1..=9).contains(&data[i])).collect();
                    if !candidates.is_empty() {
                        let i = self.rng.pick(&candidates);
                        let varint: &[u8] = self.rng.pick(&[
                            &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                            &[0x80, 0x80, 0x80, 0x80, 0x08][..],
                            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
                        ]);
                        data.splice(i..=i, varint.iter().copied());
                    }
                }
                // Duplicate a slice (repeated structures, shifted fields).
                8 => {
                    if len > 1 {
                        let start = self.rng.below(len);
                        let end = (start + 1 + self.rng.below(32)).min(len);
                        let chunk = data[start..end].to_vec();
                        let at = self.rng.below(len + 1);
                        data.splice(at..at, chunk);
                    }
                }
                // Set a byte to an extreme.
                _ => {
                    if !data.is_empty() {
                        let i = self.rng.below(data.len());
                        data[i] = self.rng.pick(&[0x00, 0xff, 0x7f, 0x80]);
                    }
                }
            }
        }
        data
    }
}

/// Partitions one mutated request may really create. Creating a partition is synchronous
/// file work on the broker (about 10 ms each here), and while it runs the broker stalls
/// every client (see the ignored `big_partition_counts_stall_other_clients`), so the storm
/// re-draws the rare mutation that turns a count into thousands.
const MAX_CREATED_PARTITIONS: i64 = 64;

/// Whether `payload` decodes to a CreateTopics or CreatePartitions that would create more
/// than [`MAX_CREATED_PARTITIONS`] partitions.
fn creates_many_partitions(payload: &[u8]) -> bool {
    let mut frame = payload.to_vec().into();
    let Ok((api, header)) = decode_header(&mut frame) else {
        return false;
    };
    let version = header.request_api_version;
    match api {
        ApiKey::CreateTopics => match decode_body::<CreateTopicsRequest>(api, &mut frame, version) {
            Ok(r) if !r.validate_only => r.topics.iter().any(|t| {
                let count = if t.assignments.is_empty() {
                    i64::from(t.num_partitions)
                } else {
                    t.assignments.len() as i64
                };
                count > MAX_CREATED_PARTITIONS
            }),
            _ => false,
        },
        ApiKey::CreatePartitions => match decode_body::<CreatePartitionsRequest>(api, &mut frame, version) {
            Ok(r) if !r.validate_only => r
                .topics
                .iter()
                .any(|t| i64::from(t.count) > MAX_CREATED_PARTITIONS),
            _ => false,
        },
        _ => false,
    }
}
