//! Record formats of `__consumer_offsets` and `__sapper_offset_history` (our own, not Kafka's
//! Java schemas). Every key and value starts with a big-endian `i16` version; strings are an
//! `i16` length then UTF-8 (length -1: null), byte arrays an `i32` length then bytes.
//!
//! `__consumer_offsets` keys (the key version also says what the record is):
//! - version 1, offset commit: `group: string, topic: string, partition: i32`.
//!   Value version 1: `offset: i64, leader_epoch: i32, metadata: string, commit_time_ms: i64`.
//! - version 2, group metadata: `group: string`.
//!   Value version 1: `protocol_type: string, generation: i32, protocol: string?, leader: string?,
//!   member_count: i32`, then per member `member_id: string, group_instance_id: string?,
//!   client_id: string, client_host: string, rebalance_timeout_ms: i32, session_timeout_ms: i32,
//!   subscription: bytes, assignment: bytes`.
//!
//! A null value (tombstone) deletes the key: OffsetDelete, DeleteGroups and offset expiry.
//! Replay applies records in log order, the latest per key wins, and unknown versions are
//! skipped with a warning (a newer broker's records survive a downgrade as data, unread).
//!
//! `__sapper_offset_history` key: the offset-commit key above; value version 1: `group: string,
//! topic: string, partition: i32, commit_time_ms: i64, offset: i64, metadata: string`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::offsets::CommittedOffset;
use super::state::{GroupSnapshot, MemberSnapshot};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const VALUE_VERSION: i16 = 1;

/// What a `__consumer_offsets` key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

/// A key or value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed group record: {0}")]
pub struct FormatError(&'static str);

fn put_str(buf: &mut BytesMut, s: &str) {
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    buf.put_i16(len);
    buf.put_slice(s.as_bytes().get(..len as usize).unwrap_or_default());
}

fn put_opt_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
    buf.put_slice(b);
}

fn get_i16(buf: &mut Bytes) -> Result<i16, FormatError> {
    buf.try_get_i16().map_err(|_| FormatError("truncated i16"))
}
fn get_i32(buf: &mut Bytes) -> Result<i32, FormatError> {
    buf.try_get_i32().map_err(|_| FormatError("truncated i32"))
}
fn get_i64(buf: &mut Bytes) -> Result<i64, FormatError> {
    buf.try_get_i64().map_err(|_| FormatError("truncated i64"))
}

fn get_opt_str(buf: &mut Bytes) -> Result<Option<String>, FormatError> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if buf.remaining() < len {
        return Err(FormatError("truncated string"));
    }
    let s = buf.split_to(len);
    String::from_utf8(s.to_vec())
        .map(Some)
        .map_err(|_| FormatError("string is not UTF-8"))
}

fn get_str(buf: &mut Bytes) -> Result<String, FormatError> {
    get_opt_str(buf)?.ok_or(FormatError("null string"))
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, FormatError> {
    let len = usize::try_from(get_i32(buf)?).map_err(|_| FormatError("negative length"))?;
    if buf.remaining() < len {
        return Err(FormatError("truncated bytes"));
    }
    Ok(buf.split_to(len))
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(OFFSET_KEY_VERSION);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(GROUP_KEY_VERSION);
    put_str(&mut b, group);
    b.freeze()
}

/// Reads a key; `Ok(None)` for a version this broker does not know.
pub fn decode_key(mut buf: Bytes) -> Result<Option<RecordKey>, FormatError> {
    match get_i16(&mut buf)? {
        OFFSET_KEY_VERSION => Ok(Some(RecordKey::Offset {
            group: get_str(&mut buf)?,
            topic: get_str(&mut buf)?,
            partition: get_i32(&mut buf)?,
        })),
        GROUP_KEY_VERSION => Ok(Some(RecordKey::Group {
            group: get_str(&mut buf)?,
        })),
        _ => Ok(None),
    }
}

pub fn offset_value(c: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(VALUE_VERSION);
    b.put_i64(c.offset);
    b.put_i32(c.leader_epoch);
    put_str(&mut b, &c.metadata);
    b.put_i64(c.commit_time_ms);
    b.freeze()
}

pub fn decode_offset_value(mut buf: Bytes) -> Result<CommittedOffset, FormatError> {
    if get_i16(&mut buf)? != VALUE_VERSION {
        return Err(FormatError("unknown offset value version"));
    }
    Ok(CommittedOffset {
        offset: get_i64(&mut buf)?,
        leader_epoch: get_i32(&mut buf)?,
        metadata: get_str(&mut buf)?,
        commit_time_ms: get_i64(&mut buf)?,
    })
}

pub fn group_value(s: &GroupSnapshot) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(VALUE_VERSION);
    put_str(&mut b, &s.protocol_type);
    b.put_i32(s.generation);
    put_opt_str(&mut b, s.protocol.as_deref());
    put_opt_str(&mut b, s.leader.as_deref());
    b.put_i32(i32::try_from(s.members.len()).unwrap_or(i32::MAX));
    for m in &s.members {
        put_str(&mut b, &m.member_id);
        put_opt_str(&mut b, m.group_instance_id.as_deref());
        put_str(&mut b, &m.client_id);
        put_str(&mut b, &m.client_host);
        b.put_i32(m.rebalance_timeout_ms);
        b.put_i32(m.session_timeout_ms);
        put_bytes(&mut b, &m.subscription);
        put_bytes(&mut b, &m.assignment);
    }
    b.freeze()
}

pub fn decode_group_value(mut buf: Bytes) -> Result<GroupSnapshot, FormatError> {
    if get_i16(&mut buf)? != VALUE_VERSION {
        return Err(FormatError("unknown group value version"));
    }
    let protocol_type = get_str(&mut buf)?;
    let generation = get_i32(&mut buf)?;
    let protocol = get_opt_str(&mut buf)?;
    let leader = get_opt_str(&mut buf)?;
    let count = get_i32(&mut buf)?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        members.push(MemberSnapshot {
            member_id: get_str(&mut buf)?,
            group_instance_id: get_opt_str(&mut buf)?,
            client_id: get_str(&mut buf)?,
            client_host: get_str(&mut buf)?,
            rebalance_timeout_ms: get_i32(&mut buf)?,
            session_timeout_ms: get_i32(&mut buf)?,
            subscription: get_bytes(&mut buf)?,
            assignment: get_bytes(&mut buf)?,
        });
    }
    Ok(GroupSnapshot {
        protocol_type,
        generation,
        protocol,
        leader,
        members,
    })
}

pub fn history_value(group: &str, topic: &str, partition: i32, c: &CommittedOffset) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(VALUE_VERSION);
    put_str(&mut b, group);
    put_str(&mut b, topic);
    b.put_i32(partition);
    b.put_i64(c.commit_time_ms);
    b.put_i64(c.offset);
    put_str(&mut b, &c.metadata);
    b.freeze()
}

/// One `__sapper_offset_history` value: a commit as the coordinator accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub commit_time_ms: i64,
    pub offset: i64,
    pub metadata: String,
}

/// Reads a [`history_value`]; the reader of `sapper group history` (crates/ops) uses it too.
pub fn decode_history_value(mut buf: Bytes) -> Result<HistoryRecord, FormatError> {
    if get_i16(&mut buf)? != VALUE_VERSION {
        return Err(FormatError("unknown history value version"));
    }
    Ok(HistoryRecord {
        group: get_str(&mut buf)?,
        topic: get_str(&mut buf)?,
        partition: get_i32(&mut buf)?,
        commit_time_ms: get_i64(&mut buf)?,
        offset: get_i64(&mut buf)?,
        metadata: get_str(&mut buf)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = offset_key("g", "t", 3);
        assert_eq!(
            decode_key(key).unwrap(),
            Some(RecordKey::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 3
            })
        );
        assert_eq!(
            decode_key(group_key("g")).unwrap(),
            Some(RecordKey::Group { group: "g".into() })
        );
        let c = CommittedOffset {
            offset: 42,
            leader_epoch: -1,
            metadata: "meta".into(),
            commit_time_ms: 7,
        };
        assert_eq!(decode_offset_value(offset_value(&c)).unwrap(), c);
        let s = GroupSnapshot {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: None,
            members: vec![MemberSnapshot {
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout_ms: 1,
                session_timeout_ms: 2,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group_value(group_value(&s)).unwrap(), s);
    }

    #[test]
    fn history_value_round_trips() {
        let c = CommittedOffset {
            offset: 9,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_time_ms: 1_700_000_000_123,
        };
        let decoded = decode_history_value(history_value("g", "t", 2, &c)).unwrap();
        assert_eq!(
            decoded,
            HistoryRecord {
                group: "g".into(),
                topic: "t".into(),
                partition: 2,
                commit_time_ms: 1_700_000_000_123,
                offset: 9,
                metadata: "m".into(),
            }
        );
        assert!(decode_history_value(Bytes::from_static(&[0, 1, 0, 1])).is_err());
    }

    #[test]
    fn truncated_and_unknown_are_reported() {
        assert!(decode_key(Bytes::from_static(&[0, 1, 0])).is_err());
        assert_eq!(decode_key(Bytes::from_static(&[0, 9])).unwrap(), None);
        assert!(decode_offset_value(Bytes::from_static(&[0, 1, 0])).is_err());
    }
}
