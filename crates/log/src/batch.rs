//! A read-only view of a Kafka record batch header (magic 2), plus the few in-place patches
//! the broker is allowed to make.
//!
//! The data path never re-encodes a producer's batch: it validates this fixed 61-byte header
//! and the CRC32C, then patches `baseOffset` and `partitionLeaderEpoch` (both outside the CRC).
//! Only `LogAppendTime` topics also rewrite `attributes` and `maxTimestamp`, which are inside
//! the CRC, so [`set_log_append_time`] recomputes it, exactly as Kafka does.
//!
//! Layout (big-endian), from Kafka's `DefaultRecordBatch`:
//! ```text
//! 0  baseOffset: i64          8  batchLength: i32        12 partitionLeaderEpoch: i32
//! 16 magic: i8                17 crc: u32 (over 21..)    21 attributes: i16
//! 23 lastOffsetDelta: i32     27 baseTimestamp: i64      35 maxTimestamp: i64
//! 43 producerId: i64          51 producerEpoch: i16      53 baseSequence: i32
//! 57 recordsCount: i32        61 records...
//! ```

use thiserror::Error;

/// Size of the fixed record batch header, in bytes.
pub const HEADER_SIZE: usize = 61;
/// Bytes before `batchLength`'s payload starts: `baseOffset` + `batchLength`.
pub const LOG_OVERHEAD: usize = 12;
/// The only record batch format we store.
pub const CURRENT_MAGIC: i8 = 2;
/// `producerId` of a batch written without an idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// `baseSequence` of a batch written without an idempotent producer.
pub const NO_SEQUENCE: i32 = -1;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_FLAG: i16 = 0x08;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;

/// Why a byte range is not a valid record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BatchError {
    /// Fewer bytes than the header, or than `batchLength` announces (a torn write).
    #[error("record batch is truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    /// `batchLength` is smaller than a header can be.
    #[error("record batch length {0} is invalid")]
    InvalidLength(i32),
    /// Magic byte other than 2.
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// The stored CRC32C does not match the bytes.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// Header fields that contradict each other (record count, offset delta, codec).
    #[error("record batch header is inconsistent: {0}")]
    Inconsistent(&'static str),
    /// The records cannot be read: a codec failed or a record is malformed.
    #[error("record batch records are malformed: {0}")]
    MalformedRecords(&'static str),
    /// A record without a key was produced to a compacted topic (Kafka's wording).
    #[error("Compacted topic cannot accept message without key")]
    MissingKey,
}

/// Compression codec named in a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The codec's value in the low three bits of a batch's `attributes`.
    pub fn attribute_code(self) -> i16 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }
}

/// A borrowed view of one record batch: header fields by name over the stored bytes.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
}

fn read_array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(src) = bytes.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

impl<'a> BatchView<'a> {
    /// Parses the header at the start of `bytes` and checks that the whole batch is present.
    /// It does not check the CRC: call [`BatchView::verify_crc`] for that.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_SIZE {
            return Err(BatchError::Truncated {
                needed: HEADER_SIZE,
                available: bytes.len(),
            });
        }
        let length = i32::from_be_bytes(read_array(bytes, BATCH_LENGTH));
        if length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(length));
        }
        let total = LOG_OVERHEAD + length as usize;
        let Some(batch) = bytes.get(..total) else {
            return Err(BatchError::Truncated {
                needed: total,
                available: bytes.len(),
            });
        };
        let magic = i8::from_be_bytes(read_array(batch, MAGIC));
        if magic != CURRENT_MAGIC {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        Ok(Self { bytes: batch })
    }

    /// Parses and fully validates one batch as it arrives from a producer or from disk:
    /// header, CRC, codec and the record-count / offset-delta agreement.
    pub fn parse_validated(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let view = Self::parse(bytes)?;
        view.verify_crc()?;
        if view.compression_code() > 4 {
            return Err(BatchError::Inconsistent("unknown compression codec"));
        }
        if view.records_count() < 0 || view.last_offset_delta() < 0 {
            return Err(BatchError::Inconsistent("negative record count or offset delta"));
        }
        Ok(view)
    }

    /// The batch's bytes, exactly as stored.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Total size on disk including the 12-byte log overhead.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    pub fn base_offset(&self) -> i64 {
        i64::from_be_bytes(read_array(self.bytes, BASE_OFFSET))
    }
    pub fn last_offset_delta(&self) -> i32 {
        i32::from_be_bytes(read_array(self.bytes, LAST_OFFSET_DELTA))
    }
    /// Offset of the batch's last record: `baseOffset + lastOffsetDelta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset() + i64::from(self.last_offset_delta())
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        i32::from_be_bytes(read_array(self.bytes, PARTITION_LEADER_EPOCH))
    }
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(read_array(self.bytes, CRC))
    }
    pub fn attributes(&self) -> i16 {
        i16::from_be_bytes(read_array(self.bytes, ATTRIBUTES))
    }
    fn compression_code(&self) -> i16 {
        self.attributes() & COMPRESSION_MASK
    }
    pub fn compression(&self) -> Option<Compression> {
        match self.compression_code() {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes() & TIMESTAMP_TYPE_FLAG != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_FLAG != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_FLAG != 0
    }
    pub fn base_timestamp(&self) -> i64 {
        i64::from_be_bytes(read_array(self.bytes, BASE_TIMESTAMP))
    }
    pub fn max_timestamp(&self) -> i64 {
        i64::from_be_bytes(read_array(self.bytes, MAX_TIMESTAMP))
    }
    pub fn producer_id(&self) -> i64 {
        i64::from_be_bytes(read_array(self.bytes, PRODUCER_ID))
    }
    pub fn producer_epoch(&self) -> i16 {
        i16::from_be_bytes(read_array(self.bytes, PRODUCER_EPOCH))
    }
    pub fn base_sequence(&self) -> i32 {
        i32::from_be_bytes(read_array(self.bytes, BASE_SEQUENCE))
    }
    /// Sequence of the last record, wrapping at `i32::MAX` as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        let base = self.base_sequence();
        if base == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        let delta = self.last_offset_delta();
        if base > i32::MAX - delta {
            delta - (i32::MAX - base) - 1
        } else {
            base + delta
        }
    }
    pub fn records_count(&self) -> i32 {
        i32::from_be_bytes(read_array(self.bytes, RECORDS_COUNT))
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id() != NO_PRODUCER_ID
    }

    /// Checks the stored CRC32C against the bytes it covers (attributes to the end).
    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let stored = self.crc();
        let computed = crc32c::crc32c(self.bytes.get(ATTRIBUTES..).unwrap_or_default());
        if stored == computed {
            Ok(())
        } else {
            Err(BatchError::CrcMismatch { stored, computed })
        }
    }
}

/// Iterates over consecutive batches in a buffer. Yields an error (once) for the first
/// invalid or truncated batch and then stops.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    rest: &'a [u8],
    validate: bool,
    done: bool,
}

impl<'a> BatchIter<'a> {
    /// Header-only iteration (lengths and magic checked, CRC not).
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            validate: false,
            done: false,
        }
    }
    /// Iteration that also checks CRC and header consistency of each batch.
    pub fn validated(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            validate: true,
            done: false,
        }
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.is_empty() {
            return None;
        }
        let parsed = if self.validate {
            BatchView::parse_validated(self.rest)
        } else {
            BatchView::parse(self.rest)
        };
        match parsed {
            Ok(view) => {
                self.rest = self.rest.get(view.size()..).unwrap_or_default();
                Some(Ok(view))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Overwrites `baseOffset` of the batch at the start of `bytes`.
pub fn set_base_offset(bytes: &mut [u8], base_offset: i64) {
    if let Some(dst) = bytes.get_mut(BASE_OFFSET..BASE_OFFSET + 8) {
        dst.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Overwrites `partitionLeaderEpoch` of the batch at the start of `bytes`.
pub fn set_partition_leader_epoch(bytes: &mut [u8], epoch: i32) {
    if let Some(dst) = bytes.get_mut(PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4) {
        dst.copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Marks the batch as `LogAppendTime` with `max_timestamp = now_ms` and recomputes the CRC.
pub fn set_log_append_time(bytes: &mut [u8], now_ms: i64) {
    if bytes.len() < HEADER_SIZE {
        return;
    }
    let attributes = i16::from_be_bytes(read_array(bytes, ATTRIBUTES)) | TIMESTAMP_TYPE_FLAG;
    if let Some(dst) = bytes.get_mut(ATTRIBUTES..ATTRIBUTES + 2) {
        dst.copy_from_slice(&attributes.to_be_bytes());
    }
    if let Some(dst) = bytes.get_mut(MAX_TIMESTAMP..MAX_TIMESTAMP + 8) {
        dst.copy_from_slice(&now_ms.to_be_bytes());
    }
    let crc = crc32c::crc32c(bytes.get(ATTRIBUTES..).unwrap_or_default());
    if let Some(dst) = bytes.get_mut(CRC..CRC + 4) {
        dst.copy_from_slice(&crc.to_be_bytes());
    }
}

/// A copy of `original` holding `body` (already compressed with the batch's codec) as its
/// `records_count` records, with `max_timestamp`, and a recomputed CRC. Every other header
/// field, `baseOffset`, `baseTimestamp`, `lastOffsetDelta` and `baseSequence` included, is kept:
/// records keep their offset and timestamp deltas, and an idempotent producer's last sequence
/// stays what it was (as Kafka's cleaner does).
pub(crate) fn with_records(
    original: &BatchView<'_>,
    records_count: i32,
    max_timestamp: i64,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
    out.extend_from_slice(original.as_bytes().get(..HEADER_SIZE).unwrap_or_default());
    out.extend_from_slice(body);
    let length = i32::try_from(out.len().saturating_sub(LOG_OVERHEAD)).unwrap_or(i32::MAX);
    let mut put = |at: usize, field: &[u8]| {
        if let Some(dst) = out.get_mut(at..at + field.len()) {
            dst.copy_from_slice(field);
        }
    };
    put(BATCH_LENGTH, &length.to_be_bytes());
    put(RECORDS_COUNT, &records_count.to_be_bytes());
    put(MAX_TIMESTAMP, &max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(out.get(ATTRIBUTES..).unwrap_or_default());
    if let Some(dst) = out.get_mut(CRC..CRC + 4) {
        dst.copy_from_slice(&crc.to_be_bytes());
    }
    out
}

/// The header fields of a batch built here rather than received ([`assemble`] writes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NewBatch {
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

/// A whole batch: `header`'s fields, `body` (the records, already compressed with the codec
/// named in `header.attributes`), base offset 0 and partition leader epoch -1 (the log assigns
/// both on append, as for a producer's batch), and the CRC. `None` if the batch would be longer
/// than `batchLength` can say.
pub(crate) fn assemble(header: &NewBatch, body: &[u8]) -> Option<Vec<u8>> {
    let length = i32::try_from(HEADER_SIZE - LOG_OVERHEAD + body.len()).ok()?;
    let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
    out.extend_from_slice(&0i64.to_be_bytes()); // baseOffset
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
    out.extend_from_slice(&CURRENT_MAGIC.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    out.extend_from_slice(&header.attributes.to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&header.max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&header.base_sequence.to_be_bytes());
    out.extend_from_slice(&header.records_count.to_be_bytes());
    debug_assert_eq!(out.len(), HEADER_SIZE);
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(out.get(ATTRIBUTES..).unwrap_or_default());
    out.get_mut(CRC..CRC + 4)?.copy_from_slice(&crc.to_be_bytes());
    Some(out)
}

/// `original` with no records left: its header (offset span, timestamps, producer fields)
/// uncompressed and with a zero record count, as Kafka writes the empty batches its cleaner
/// keeps. Consumers skip it and move past its last offset.
pub(crate) fn emptied(original: &BatchView<'_>) -> Vec<u8> {
    let mut out = with_records(original, 0, original.max_timestamp(), &[]);
    let attributes = original.attributes() & !COMPRESSION_MASK;
    if let Some(dst) = out.get_mut(ATTRIBUTES..ATTRIBUTES + 2) {
        dst.copy_from_slice(&attributes.to_be_bytes());
    }
    let crc = crc32c::crc32c(out.get(ATTRIBUTES..).unwrap_or_default());
    if let Some(dst) = out.get_mut(CRC..CRC + 4) {
        dst.copy_from_slice(&crc.to_be_bytes());
    }
    out
}

/// Test and tooling helpers that build valid batches without a Kafka client.
// Indexing is into a buffer this module just allocated at `HEADER_SIZE` or more: it cannot fail.
#[allow(clippy::indexing_slicing)]
pub mod testing {
    use super::*;

    /// A minimal uncompressed batch with `count` records, each holding `value` (no key).
    pub fn simple_batch(count: i32, timestamp: i64, value: &[u8]) -> Vec<u8> {
        batch_with_producer(count, timestamp, value, NO_PRODUCER_ID, -1, NO_SEQUENCE)
    }

    /// Like [`simple_batch`] but stamped with an idempotent producer's id, epoch and sequence.
    pub fn batch_with_producer(
        count: i32,
        timestamp: i64,
        value: &[u8],
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            let mut body = Vec::new();
            body.push(0u8); // record attributes
            put_varlong(&mut body, 0); // timestamp delta
            put_varlong(&mut body, i64::from(i)); // offset delta
            put_varlong(&mut body, -1); // null key
            put_varlong(&mut body, value.len() as i64);
            body.extend_from_slice(value);
            put_varlong(&mut body, 0); // no headers
            put_varlong(&mut records, body.len() as i64);
            records.extend_from_slice(&body);
        }
        let mut out = vec![0u8; HEADER_SIZE];
        out.extend_from_slice(&records);
        let length = (out.len() - LOG_OVERHEAD) as i32;
        out[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
        out[PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4].copy_from_slice(&0i32.to_be_bytes());
        out[MAGIC] = CURRENT_MAGIC as u8;
        out[LAST_OFFSET_DELTA..LAST_OFFSET_DELTA + 4].copy_from_slice(&(count - 1).to_be_bytes());
        out[BASE_TIMESTAMP..BASE_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
        out[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
        out[PRODUCER_ID..PRODUCER_ID + 8].copy_from_slice(&producer_id.to_be_bytes());
        out[PRODUCER_EPOCH..PRODUCER_EPOCH + 2].copy_from_slice(&producer_epoch.to_be_bytes());
        out[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&base_sequence.to_be_bytes());
        out[RECORDS_COUNT..RECORDS_COUNT + 4].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&out[ATTRIBUTES..]);
        out[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    fn put_varlong(out: &mut Vec<u8>, value: i64) {
        let mut v = ((value << 1) ^ (value >> 63)) as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn parses_a_valid_batch() {
        let bytes = simple_batch(3, 1_000, b"hello");
        let view = BatchView::parse_validated(&bytes).unwrap();
        assert_eq!(view.records_count(), 3);
        assert_eq!(view.last_offset_delta(), 2);
        assert_eq!(view.size(), bytes.len());
        assert_eq!(view.compression(), Some(Compression::None));
    }

    #[test]
    fn base_offset_patch_keeps_crc_valid() {
        let mut bytes = simple_batch(2, 5, b"x");
        set_base_offset(&mut bytes, 42);
        set_partition_leader_epoch(&mut bytes, 7);
        let view = BatchView::parse_validated(&bytes).unwrap();
        assert_eq!(view.base_offset(), 42);
        assert_eq!(view.last_offset(), 43);
        assert_eq!(view.partition_leader_epoch(), 7);
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut bytes = simple_batch(1, 5, b"x");
        set_log_append_time(&mut bytes, 99);
        let view = BatchView::parse_validated(&bytes).unwrap();
        assert!(view.is_log_append_time());
        assert_eq!(view.max_timestamp(), 99);
    }

    #[test]
    fn detects_corruption_and_truncation() {
        let mut bytes = simple_batch(1, 5, b"abc");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(matches!(
            BatchView::parse_validated(&bytes),
            Err(BatchError::CrcMismatch { .. })
        ));
        assert!(matches!(
            BatchView::parse(&bytes[..bytes.len() - 1]),
            Err(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn last_sequence_wraps() {
        let bytes = batch_with_producer(3, 0, b"x", 1, 0, i32::MAX - 1);
        let view = BatchView::parse(&bytes).unwrap();
        assert_eq!(view.last_sequence(), 0);
    }
}
