//! The metadata records the quorum replicates, one enum, serialized with serde.
//!
//! These follow Kafka's KRaft records in meaning (broker registration and fencing, topics,
//! partition state with leader and partition epochs, producer id blocks) but are Sapper's own
//! types: KRaft's records are internal to Kafka, not part of the client contract. The serde
//! representation is tagged by `type` so a snapshot or a log entry reads as plain JSON, and new
//! variants can be added without breaking old ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A broker's `node.id`.
pub type BrokerId = i32;

/// Kafka's "no leader" (`-1` in Metadata responses).
pub const NO_LEADER: BrokerId = -1;

/// The epoch a controller puts in a `RegisterBroker` record it proposes: the state machine
/// replaces it with the record's Raft log index when the batch is applied, so a broker's epoch
/// is the index of its registration (as in KRaft) without the proposer knowing the index.
pub const EPOCH_FROM_LOG_INDEX: i64 = -1;

/// One change to the cluster's metadata. Applied in log order by [`crate::MetadataImage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker (re)registers. `epoch` is new for each registration (the controller uses the
    /// Raft log index of the record), so a restarted broker is a new incarnation and requests
    /// carrying an older epoch are refused.
    RegisterBroker(BrokerRegistration),
    /// The broker's session expired or it asked to shut down: it leads nothing and is in no
    /// ISR (the controller moves those away in the same batch, before this record).
    FenceBroker {
        id: BrokerId,
        epoch: i64,
    },
    /// The broker has caught up on metadata and may lead and join ISRs again.
    UnfenceBroker {
        id: BrokerId,
        epoch: i64,
    },
    /// The broker is retired (blue/green rollover); it must already lead nothing.
    UnregisterBroker {
        id: BrokerId,
        epoch: i64,
    },
    CreateTopic {
        name: String,
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        id: Uuid,
    },
    /// Sets (`Some`) or removes (`None`) one topic config override.
    SetTopicConfig {
        id: Uuid,
        key: String,
        value: Option<String>,
    },
    /// The whole new state of one partition: creation, leader election, ISR change and
    /// reassignment are all this record with the partition epoch advanced by one.
    Partition(PartitionRecord),
    /// A block of idempotent-producer ids for one broker; blocks never overlap.
    AllocateProducerIds {
        broker: BrokerId,
        first: i64,
        count: i64,
    },
}

/// What a broker tells the controller about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub id: BrokerId,
    /// Random per process start: tells a restart from a duplicate registration.
    pub incarnation: Uuid,
    pub epoch: i64,
    pub rack: Option<String>,
    pub listeners: Vec<Listener>,
}

/// One advertised listener of a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// A partition's replicated state (Kafka's PartitionRecord / PartitionChangeRecord).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    pub topic_id: Uuid,
    pub partition: i32,
    /// Replica order matters: the first is the preferred leader.
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// [`NO_LEADER`] when offline.
    pub leader: BrokerId,
    /// Advances whenever the leader changes (followers truncate by it).
    pub leader_epoch: i32,
    /// Advances on every change of this record (a fence for AlterPartition requests).
    pub partition_epoch: i32,
    /// Reassignment in progress: replicas being added / removed (both subsets of `replicas`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<BrokerId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<BrokerId>,
}

impl PartitionRecord {
    /// The same partition with `leader` and `isr`, epochs advanced as Kafka does: the leader
    /// epoch only when the leader changes, the partition epoch always.
    pub fn with_leader_and_isr(&self, leader: BrokerId, isr: Vec<BrokerId>) -> Self {
        let leader_epoch = if leader == self.leader {
            self.leader_epoch
        } else {
            self.leader_epoch.saturating_add(1)
        };
        Self {
            leader,
            isr,
            leader_epoch,
            partition_epoch: self.partition_epoch.saturating_add(1),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_json_with_a_type_tag() {
        let record = MetadataRecord::FenceBroker { id: 3, epoch: 17 };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(json, r#"{"type":"FenceBroker","id":3,"epoch":17}"#);
        assert_eq!(serde_json::from_str::<MetadataRecord>(&json).unwrap(), record);
    }

    #[test]
    fn leader_epoch_advances_only_when_the_leader_changes() {
        let p = PartitionRecord {
            topic_id: Uuid::nil(),
            partition: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 9,
            adding: vec![],
            removing: vec![],
        };
        let shrunk = p.with_leader_and_isr(1, vec![1, 2]);
        assert_eq!((shrunk.leader_epoch, shrunk.partition_epoch), (4, 10));
        let moved = p.with_leader_and_isr(2, vec![2, 3]);
        assert_eq!((moved.leader_epoch, moved.partition_epoch), (5, 10));
    }
}
