//! The replication tests' data checker ([`Checker`]): it records every record the producer saw
//! acknowledged (partition, offset, payload from the delivery report) and every record any
//! consumer read (partition, offset, payload, which consumer), and [`Checker::verify`] fails
//! with a readable report on:
//!
//! - a lost acknowledged record: nothing read at its offset, something else read there, or
//!   the offset is past the partition's log end seen by the final complete read;
//! - an offset that held two different payloads (across consumers and restarts), or two
//!   acknowledgements for one offset;
//! - out-of-order records: one producer writes payloads `P:S` (partition P, sequence S, S
//!   increasing per partition), so within a partition the sequences must strictly increase
//!   with the offsets, in what was acknowledged and in what each consumer read (a duplicate
//!   of a sequence is a violation too: the producer is idempotent);
//! - a payload that is not `P:S`, or read from another partition than P.
//!
//! Nothing here talks to a broker; the checker is unit-tested in `replication_failover.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The payload of sequence `seq` for `partition`.
pub fn payload(partition: i32, seq: u64) -> Vec<u8> {
    format!("{partition}:{seq}").into_bytes()
}

/// The (partition, sequence) a payload made by [`payload`] carries.
pub fn parse_payload(bytes: &[u8]) -> Option<(i32, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (partition, seq) = text.split_once(':')?;
    Some((partition.parse().ok()?, seq.parse().ok()?))
}

/// How strict [`Checker::verify`] is about acknowledged records not read yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completeness {
    /// Mid-run: an acknowledged record nobody has read yet is not (yet) a failure; a
    /// different payload at its offset is.
    SoFar,
    /// After the final complete read: every acknowledged record must have been read.
    Final,
}

/// Counts from a successful verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckSummary {
    pub acknowledged: usize,
    /// Distinct (partition, offset) read by any consumer.
    pub consumed_offsets: usize,
    /// Acknowledged records nobody read yet (always 0 after a `Final` verification).
    pub unread_acknowledged: usize,
}

/// The distinct payloads read at one offset, each with the consumer that read it first.
type Reads = Vec<(Vec<u8>, String)>;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct Checker {
    /// (partition, offset) -> acknowledged payload.
    acked: BTreeMap<(i32, i64), Vec<u8>>,
    /// Acknowledged without an offset (librdkafka reports -1001 when the broker's answer
    /// carries none, as for a retried batch the broker recognised as a duplicate): these
    /// must be read at some offset of their partition.
    acked_without_offset: Vec<(i32, Vec<u8>)>,
    /// (partition, offset) -> every distinct payload read there, with who read it first.
    consumed: BTreeMap<(i32, i64), Reads>,
    /// (consumer, partition) -> offset -> sequence, first read per offset.
    per_consumer: BTreeMap<(String, i32), BTreeMap<i64, u64>>,
    /// Partition -> log end offset seen by the final complete read.
    log_end: BTreeMap<i32, i64>,
    /// Violations found while recording (conflicting acknowledgements, foreign payloads).
    recorded_violations: Vec<String>,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// A delivery report: `payload` was acknowledged at `partition`/`offset`.
    pub fn record_ack(&mut self, partition: i32, offset: i64, payload: &[u8]) {
        self.check_payload("acknowledged", partition, offset, payload);
        if offset < 0 {
            self.acked_without_offset.push((partition, payload.to_vec()));
            return;
        }
        match self.acked.get(&(partition, offset)) {
            Some(previous) if previous.as_slice() != payload => {
                self.recorded_violations.push(format!(
                    "two acknowledgements for partition {partition} offset {offset}: {:?} and {:?}",
                    show(previous),
                    show(payload)
                ));
            }
            Some(_) => {}
            None => {
                self.acked.insert((partition, offset), payload.to_vec());
            }
        }
    }

    /// `consumer` read `payload` at `partition`/`offset`.
    pub fn record_consumed(&mut self, consumer: &str, partition: i32, offset: i64, payload: &[u8]) {
        self.check_payload(consumer, partition, offset, payload);
        let seen = self.consumed.entry((partition, offset)).or_default();
        if !seen.iter().any(|(p, _)| p.as_slice() == payload) {
            seen.push((payload.to_vec(), consumer.to_owned()));
        }
        if let Some((_, seq)) = parse_payload(payload) {
            self.per_consumer
                .entry((consumer.to_owned(), partition))
                .or_default()
                .entry(offset)
                .or_insert(seq);
        }
    }

    /// The final complete read found `partition`'s log to end at `end` (its high watermark).
    pub fn record_log_end(&mut self, partition: i32, end: i64) {
        self.log_end.insert(partition, end);
    }

    fn check_payload(&mut self, who: &str, partition: i32, offset: i64, payload: &[u8]) {
        match parse_payload(payload) {
            Some((p, _)) if p == partition => {}
            Some((p, _)) => self.recorded_violations.push(format!(
                "{who}: partition {partition} offset {offset} holds {:?}, written for partition {p}",
                show(payload)
            )),
            None => self.recorded_violations.push(format!(
                "{who}: partition {partition} offset {offset} holds a foreign payload {:?}",
                show(payload)
            )),
        }
    }

    /// How many records were acknowledged.
    pub fn acknowledged(&self) -> usize {
        self.acked.len() + self.acked_without_offset.len()
    }

    /// The highest acknowledged offset of each partition.
    pub fn acked_high(&self) -> BTreeMap<i32, i64> {
        let mut high = BTreeMap::new();
        for (partition, offset) in self.acked.keys() {
            high.insert(*partition, *offset);
        }
        high
    }

    /// Acknowledged records at or below `up_to[partition]` that no consumer has read yet.
    pub fn unread_acked(&self, up_to: &BTreeMap<i32, i64>) -> Vec<(i32, i64)> {
        self.acked
            .keys()
            .filter(|(p, o)| up_to.get(p).is_some_and(|limit| o <= limit))
            .filter(|key| !self.consumed.contains_key(key))
            .copied()
            .collect()
    }

    /// Checks everything recorded so far; see the module documentation.
    pub fn verify(&self, completeness: Completeness) -> Result<CheckSummary, String> {
        let mut report = String::new();
        let mut unread = 0;

        // Lost acknowledged records, grouped per partition.
        let mut lost: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for ((partition, offset), acked) in &self.acked {
            let why = match self.consumed.get(&(*partition, *offset)) {
                Some(seen) if seen.iter().any(|(p, _)| p == acked) => {
                    if seen.len() == 1 {
                        None
                    } else {
                        // Also a conflict (reported below); the acknowledged payload did not
                        // stay there.
                        Some(format!(
                            "offset {offset} acked {:?} but also read {}",
                            show(acked),
                            describe_reads(seen)
                        ))
                    }
                }
                Some(seen) => Some(format!(
                    "offset {offset} acked {:?} but read {}",
                    show(acked),
                    describe_reads(seen)
                )),
                None => match self.log_end.get(partition) {
                    Some(end) if offset >= end => Some(format!(
                        "offset {offset} acked {:?} is past the log end {end}",
                        show(acked)
                    )),
                    _ if completeness == Completeness::Final => {
                        Some(format!("offset {offset} acked {:?} was never read", show(acked)))
                    }
                    _ => {
                        unread += 1;
                        None
                    }
                },
            };
            if let Some(why) = why {
                lost.entry(*partition).or_default().push(why);
            }
        }
        if !self.acked_without_offset.is_empty() {
            let read: BTreeSet<(i32, &[u8])> = self
                .consumed
                .iter()
                .flat_map(|((partition, _), seen)| seen.iter().map(move |(p, _)| (*partition, p.as_slice())))
                .collect();
            for (partition, acked) in &self.acked_without_offset {
                if read.contains(&(*partition, acked.as_slice())) {
                    continue;
                }
                if completeness == Completeness::Final {
                    lost.entry(*partition).or_default().push(format!(
                        "{:?} acked without an offset was never read",
                        show(acked)
                    ));
                } else {
                    unread += 1;
                }
            }
        }
        if !lost.is_empty() {
            let total: usize = lost.values().map(Vec::len).sum();
            let _ = writeln!(report, "LOST ACKNOWLEDGED RECORDS: {total}");
            for (partition, items) in &lost {
                let _ = writeln!(
                    report,
                    "  partition {partition}: {} lost, {}",
                    items.len(),
                    elide(items, 8)
                );
            }
        }

        // Offsets that held two different payloads.
        let conflicts: Vec<String> = self
            .consumed
            .iter()
            .filter(|(_, seen)| seen.len() > 1)
            .map(|((partition, offset), seen)| {
                format!("partition {partition} offset {offset}: {}", describe_reads(seen))
            })
            .collect();
        if !conflicts.is_empty() {
            let _ = writeln!(
                report,
                "OFFSETS THAT HELD TWO DIFFERENT RECORDS: {}\n  {}",
                conflicts.len(),
                elide(&conflicts, 12)
            );
        }

        // Sequences must strictly increase with offsets: in the acknowledgements and in what
        // each consumer read.
        let mut order = Vec::new();
        let mut acked_by_partition: BTreeMap<i32, BTreeMap<i64, u64>> = BTreeMap::new();
        for ((partition, offset), payload) in &self.acked {
            if let Some((_, seq)) = parse_payload(payload) {
                acked_by_partition
                    .entry(*partition)
                    .or_default()
                    .insert(*offset, seq);
            }
        }
        for (partition, records) in &acked_by_partition {
            order.extend(out_of_order("acknowledgements", *partition, records));
        }
        for ((consumer, partition), records) in &self.per_consumer {
            order.extend(out_of_order(consumer, *partition, records));
        }
        if !order.is_empty() {
            let _ = writeln!(
                report,
                "OUT-OF-ORDER OR DUPLICATED SEQUENCES: {}\n  {}",
                order.len(),
                elide(&order, 12)
            );
        }

        if !self.recorded_violations.is_empty() {
            let _ = writeln!(
                report,
                "BAD RECORDS: {}\n  {}",
                self.recorded_violations.len(),
                elide(&self.recorded_violations, 12)
            );
        }

        if report.is_empty() {
            Ok(CheckSummary {
                acknowledged: self.acknowledged(),
                consumed_offsets: self.consumed.len(),
                unread_acknowledged: unread,
            })
        } else {
            Err(format!(
                "checker: {} acknowledged ({} without an offset), {} offsets read\n{report}",
                self.acknowledged(),
                self.acked_without_offset.len(),
                self.consumed.len()
            ))
        }
    }
}

/// Places in `records` (offset -> sequence) where the sequence does not strictly increase.
fn out_of_order(who: &str, partition: i32, records: &BTreeMap<i64, u64>) -> Vec<String> {
    let mut found = Vec::new();
    let mut previous: Option<(i64, u64)> = None;
    for (offset, seq) in records {
        if let Some((prev_offset, prev_seq)) = previous {
            if *seq <= prev_seq {
                found.push(format!(
                    "{who}: partition {partition} offset {prev_offset} has sequence {prev_seq}, \
                     offset {offset} has {seq}"
                ));
            }
        }
        previous = Some((*offset, *seq));
    }
    found
}

fn describe_reads(seen: &[(Vec<u8>, String)]) -> String {
    seen.iter()
        .map(|(payload, who)| format!("{:?} (first read by {who})", show(payload)))
        .collect::<Vec<_>>()
        .join(" and ")
}

fn show(payload: &[u8]) -> String {
    String::from_utf8_lossy(payload).into_owned()
}

/// The first `keep` items joined, and how many more there are.
fn elide(items: &[String], keep: usize) -> String {
    let shown: Vec<&str> = items.iter().take(keep).map(String::as_str).collect();
    let mut text = shown.join("; ");
    if items.len() > keep {
        let _ = write!(text, "; ... and {} more", items.len() - keep);
    }
    text
}
