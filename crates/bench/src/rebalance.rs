//! The rebalance benchmark: how long a consumer group takes to give a lost member's partitions
//! to the survivors, when the member dies (SIGKILL) and when it leaves (SIGTERM, close,
//! LeaveGroup), and how long a replacement takes to be given its share.
//!
//! Members are separate processes: this executable again, run as `bench group-member` (see
//! [`MEMBER_COMMAND`]), each a librdkafka consumer that prints its whole assignment as a JSON
//! line at every change. A process is what really dies in production, connections and all.
//! Reader threads stamp each line as it arrives; the group counts as rebalanced once the
//! latest assignments of the live members are disjoint, cover every partition, and (with no
//! more members than partitions) leave nobody empty-handed.
//!
//! A SIGKILLed member is noticed only when its session times out (librdkafka's default
//! `session.timeout.ms` is 45 s), and the survivors learn of the rebalance at their next
//! heartbeat (`heartbeat.interval.ms`, 3 s by default); a leaving member is noticed at once.
//! Each stop and each replacement waits a random part of a heartbeat interval first (see
//! [`Jitter`]) so that trials sample the heartbeat cycle instead of always hitting one phase.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};

use crate::args::RebalanceArgs;
use crate::client::{client_config, ensure_topic, remaining, topic_partitions, TracingContext};
use crate::member::MemberEvent;
use crate::report::{RebalanceReport, RebalanceTrial, TrialSummary};

/// The arguments that run the hidden member subcommand of this executable; the binary mounts
/// `BenchCommand` under `bench`.
pub const MEMBER_COMMAND: [&str; 2] = ["bench", "group-member"];

/// How long a member stopped with SIGTERM may take to exit before it is killed.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the rebalance benchmark. Errors only when it cannot start (topic unusable, no
/// executable to spawn); a member that misbehaves or a wait that hits the deadline ends the
/// trials early, with what was measured so far and the reason in the report.
pub async fn run_rebalance(args: &RebalanceArgs) -> anyhow::Result<RebalanceReport> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    if let Err(err) = ensure_topic(
        &args.bootstrap,
        &args.properties,
        &args.topic,
        args.partitions,
        deadline,
    )
    .await
    {
        tracing::warn!("{err:#}; trying the topic as it is");
    }
    let args = args.clone();
    tokio::task::spawn_blocking(move || rebalance_blocking(&args, deadline))
        .await
        .context("the benchmark thread panicked")?
}

/// The blocking body of [`run_rebalance`].
fn rebalance_blocking(args: &RebalanceArgs, deadline: Instant) -> anyhow::Result<RebalanceReport> {
    let partitions = {
        let client: BaseConsumer<TracingContext> = client_config(&args.bootstrap, &[], &args.properties)
            .create_with_context(TracingContext)
            .context("creating the metadata client")?;
        topic_partitions(client.client(), &args.topic, deadline)?
    };
    let exe = std::env::current_exe().context("finding this executable to run the members")?;
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let group = format!("sapper-bench-rebalance-{}-{unix_ms}", std::process::id());
    let mut report = RebalanceReport {
        topic: args.topic.clone(),
        group: group.clone(),
        members: args.members,
        partitions: partitions.len(),
        session_timeout_ms: args.session_timeout_ms,
        heartbeat_interval_ms: args.heartbeat_interval_ms,
        first_join_ms: None,
        trials: Vec::new(),
        kill_ms: TrialSummary::default(),
        leave_ms: TrialSummary::default(),
        join_ms: TrialSummary::default(),
        timed_out: false,
        first_error: None,
    };
    let mut members = Members::new(exe, member_args(args, &group, deadline), partitions);
    if let Err(err) = run_trials(args, &mut members, &mut report, deadline) {
        report.timed_out = err.is::<DeadlinePassed>();
        report.first_error = Some(format!("{err:#}"));
    }
    members.stop_all();
    let trials = &report.trials;
    report.kill_ms = TrialSummary::of(trials.iter().filter_map(|t| t.kill_ms));
    report.leave_ms = TrialSummary::of(trials.iter().filter_map(|t| t.leave_ms));
    report.join_ms = TrialSummary::of(
        trials
            .iter()
            .flat_map(|t| [t.join_after_kill_ms, t.join_after_leave_ms])
            .flatten(),
    );
    Ok(report)
}

/// The command line of one member, after [`MEMBER_COMMAND`].
fn member_args(args: &RebalanceArgs, group: &str, deadline: Instant) -> Vec<String> {
    let mut out: Vec<String> = MEMBER_COMMAND.iter().map(|s| (*s).to_owned()).collect();
    out.extend([
        "--bootstrap".into(),
        args.bootstrap.clone(),
        "--group".into(),
        group.to_owned(),
        "--topic".into(),
        args.topic.clone(),
        // Members outlive the run by a minute at most, even if this process is killed.
        "--timeout-secs".into(),
        (remaining(deadline).as_secs() + 60).to_string(),
        "--json".into(),
    ]);
    if let Some(ms) = args.session_timeout_ms {
        out.extend(["--session-timeout-ms".into(), ms.to_string()]);
    }
    if let Some(ms) = args.heartbeat_interval_ms {
        out.extend(["--heartbeat-interval-ms".into(), ms.to_string()]);
    }
    for (key, value) in &args.properties {
        out.extend(["-X".into(), format!("{key}={value}")]);
    }
    out
}

/// A wait ran into the run's deadline.
#[derive(Debug)]
struct DeadlinePassed(String);

impl std::fmt::Display for DeadlinePassed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "deadline passed while waiting for {}", self.0)
    }
}

impl std::error::Error for DeadlinePassed {}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Forms the group, then per trial: kill a member, replace it, stop one gracefully, replace
/// it. Each figure lands in `report` as soon as it is measured.
fn run_trials(
    args: &RebalanceArgs,
    members: &mut Members,
    report: &mut RebalanceReport,
    deadline: Instant,
) -> anyhow::Result<()> {
    let started = Instant::now();
    for _ in 0..args.members {
        members.spawn()?;
    }
    let stable = members.wait_stable("the first members to form the group", deadline)?;
    report.first_join_ms = Some(ms(stable - started));
    let heartbeat = Duration::from_millis(args.heartbeat_interval_ms.unwrap_or(DEFAULT_HEARTBEAT_MS));
    let mut jitter = Jitter::seeded();

    for trial in 0..args.trials() {
        report.trials.push(RebalanceTrial::default());
        let mut record = |f: &dyn Fn(&mut RebalanceTrial)| {
            if let Some(t) = report.trials.last_mut() {
                f(t);
            }
        };
        for stop in [StopKind::Kill, StopKind::Term] {
            jitter.sleep(heartbeat, deadline);
            let (done, noticed) = members.stop_one(stop, deadline)?;
            let (done, noticed) = (ms(done), noticed.map(ms));
            record(&|t| match stop {
                StopKind::Kill => (t.kill_ms, t.kill_detected_ms) = (Some(done), noticed),
                StopKind::Term => (t.leave_ms, t.leave_detected_ms) = (Some(done), noticed),
            });
            jitter.sleep(heartbeat, deadline);
            let joined = Some(ms(members.replace(deadline)?));
            record(&|t| match stop {
                StopKind::Kill => t.join_after_kill_ms = joined,
                StopKind::Term => t.join_after_leave_ms = joined,
            });
            tracing::info!(trial, ?stop, done, ?noticed, ?joined, "rebalance measured");
        }
    }
    Ok(())
}

/// librdkafka's default `heartbeat.interval.ms`.
const DEFAULT_HEARTBEAT_MS: u64 = 3000;

/// Random pauses before each stop and each replacement.
///
/// Members that just finished a rebalance heartbeat in step, every `heartbeat.interval.ms`
/// from the same moment, and they learn of the next rebalance only at a heartbeat. Acting
/// right after the group settles would always land at the same point of that cycle and make
/// every trial measure the same phase; a pause drawn uniformly from one heartbeat interval
/// samples the whole cycle, as a crash at a random moment does.
#[derive(Debug, Clone)]
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Self(u64::from(nanos) | 1)
    }

    /// A fraction in [0, 1) from xorshift64.
    fn next_fraction(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Sleeps a uniformly drawn part of `period`, never past `deadline`.
    fn sleep(&mut self, period: Duration, deadline: Instant) {
        std::thread::sleep(period.mul_f64(self.next_fraction()).min(remaining(deadline)));
    }
}

/// How a member is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopKind {
    /// SIGKILL: the process dies, the broker must notice by the session timeout.
    Kill,
    /// SIGTERM: the member closes its consumer and sends LeaveGroup.
    Term,
}

/// What a reader thread saw on a member's stdout.
#[derive(Debug)]
enum Seen {
    Event(MemberEvent),
    /// stdout closed: the process is exiting.
    Eof,
}

/// One member process.
#[derive(Debug)]
struct Member {
    child: Child,
    /// Held open: the member stops (gracefully) when it closes.
    stdin: Option<ChildStdin>,
    reader: Option<JoinHandle<()>>,
}

/// The member processes of one group, and what each last said it was assigned.
#[derive(Debug)]
struct Members {
    exe: PathBuf,
    args: Vec<String>,
    partitions: BTreeSet<i32>,
    next_id: u32,
    /// Members counted in the group, by id (spawn order).
    live: BTreeMap<u32, Member>,
    /// Members being stopped or stopped: their lines no longer count.
    gone: Vec<Member>,
    /// The latest assignment each live member reported; absent until its first.
    assigned: BTreeMap<u32, Vec<i32>>,
    tx: mpsc::Sender<(u32, Instant, Seen)>,
    rx: mpsc::Receiver<(u32, Instant, Seen)>,
}

impl Members {
    fn new(exe: PathBuf, args: Vec<String>, partitions: Vec<i32>) -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            exe,
            args,
            partitions: partitions.into_iter().collect(),
            next_id: 0,
            live: BTreeMap::new(),
            gone: Vec::new(),
            assigned: BTreeMap::new(),
            tx,
            rx,
        }
    }

    /// Starts one more member.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        let mut command = Command::new(&self.exe);
        command
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if std::env::var_os("SAPPER_LOG").is_none() {
            // The Rust binding logs an error when it drops a consumer that already closed.
            command.env("SAPPER_LOG", "warn,rdkafka::consumer::base_consumer=off");
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting member {id} ({})", self.exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("member {id} has no stdout"))?;
        let tx = self.tx.clone();
        let reader = std::thread::Builder::new()
            .name(format!("member-{id}-stdout"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    // Other lines (the member's final report) are not events.
                    if let Ok(event) = serde_json::from_str::<MemberEvent>(&line) {
                        if tx.send((id, Instant::now(), Seen::Event(event))).is_err() {
                            return;
                        }
                    }
                }
                let _ = tx.send((id, Instant::now(), Seen::Eof));
            });
        let reader = match reader {
            Ok(r) => r,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("starting the reader of member {id}: {err}");
            }
        };
        self.live.insert(
            id,
            Member {
                child,
                stdin,
                reader: Some(reader),
            },
        );
        Ok(())
    }

    /// Whether the live members' latest assignments are disjoint, cover every partition, and
    /// give each member something when there are enough partitions to go round.
    fn stable(&self) -> bool {
        if self.live.is_empty() || self.live.keys().any(|id| !self.assigned.contains_key(id)) {
            return false;
        }
        let everyone_has_some =
            self.live.len() > self.partitions.len() || self.assigned.values().all(|a| !a.is_empty());
        let mut seen = BTreeSet::new();
        let disjoint = self.assigned.values().flatten().all(|p| seen.insert(*p));
        everyone_has_some && disjoint && seen == self.partitions
    }

    /// Applies lines from the members until the group is stable; returns when the line that
    /// made it so arrived and when the first live member's line after `since` arrived.
    fn wait_stable_since(
        &mut self,
        what: &str,
        since: Instant,
        deadline: Instant,
    ) -> anyhow::Result<(Instant, Option<Instant>)> {
        let mut first = None;
        let mut last = Instant::now();
        while !self.stable() {
            let (id, at, seen) = self
                .rx
                .recv_timeout(remaining(deadline))
                .map_err(|_| DeadlinePassed(what.to_owned()))?;
            if !self.live.contains_key(&id) {
                continue;
            }
            match seen {
                Seen::Event(MemberEvent::Assignment { partitions }) => {
                    if at >= since && first.is_none() {
                        first = Some(at);
                    }
                    self.assigned.insert(id, partitions);
                    last = at;
                }
                Seen::Event(MemberEvent::Error { error }) => {
                    tracing::warn!(member = id, "rebalance error: {error}");
                }
                Seen::Event(MemberEvent::Closed) | Seen::Eof => {
                    bail!("member {id} exited on its own while waiting for {what}")
                }
            }
        }
        Ok((last, first))
    }

    fn wait_stable(&mut self, what: &str, deadline: Instant) -> anyhow::Result<Instant> {
        Ok(self.wait_stable_since(what, Instant::now(), deadline)?.0)
    }

    /// Stops the oldest live member and waits for the survivors to rebalance. Returns the
    /// time to a stable group and the time to the survivors' first assignment change.
    fn stop_one(
        &mut self,
        kind: StopKind,
        deadline: Instant,
    ) -> anyhow::Result<(Duration, Option<Duration>)> {
        let (&id, _) = self
            .live
            .first_key_value()
            .ok_or_else(|| anyhow!("no member to stop"))?;
        let mut member = self
            .live
            .remove(&id)
            .ok_or_else(|| anyhow!("no member to stop"))?;
        self.assigned.remove(&id);
        let started = Instant::now();
        match kind {
            StopKind::Kill => member
                .child
                .kill()
                .with_context(|| format!("killing member {id}"))?,
            StopKind::Term => terminate(&mut member),
        }
        self.gone.push(member);
        let what = match kind {
            StopKind::Kill => format!("the survivors of killed member {id}"),
            StopKind::Term => format!("the survivors of member {id} leaving"),
        };
        let (done, first) = self.wait_stable_since(&what, started, deadline)?;
        self.reap(deadline);
        Ok((done - started, first.map(|f| f - started)))
    }

    /// Starts a member in place of a stopped one and waits for the group to include it.
    fn replace(&mut self, deadline: Instant) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.spawn()?;
        let at = self.wait_stable("a replacement member to be given partitions", deadline)?;
        Ok(at - started)
    }

    /// Waits (bounded) for stopped members to exit, killing those that take too long.
    fn reap(&mut self, deadline: Instant) {
        let give_up = (Instant::now() + EXIT_TIMEOUT).min(deadline);
        for member in &mut self.gone {
            while matches!(member.child.try_wait(), Ok(None)) && Instant::now() < give_up {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(member.child.try_wait(), Ok(None)) {
                tracing::warn!(
                    pid = member.child.id(),
                    "a stopped member did not exit; killing it"
                );
                let _ = member.child.kill();
            }
            let _ = member.child.wait();
            if let Some(reader) = member.reader.take() {
                let _ = reader.join();
            }
        }
        self.gone.clear();
    }

    /// Asks every member to leave the group, then waits for them (bounded).
    fn stop_all(&mut self) {
        let live = std::mem::take(&mut self.live);
        self.assigned.clear();
        for (_, mut member) in live {
            terminate(&mut member);
            self.gone.push(member);
        }
        self.reap(Instant::now() + EXIT_TIMEOUT);
    }
}

impl Drop for Members {
    /// Never leaves a member process behind, whatever path left the benchmark.
    fn drop(&mut self) {
        for member in self.live.values_mut().chain(self.gone.iter_mut()) {
            let _ = member.child.kill();
            let _ = member.child.wait();
        }
    }
}

/// Sends SIGTERM to a member (the graceful stop); if that cannot be done, closes its stdin,
/// which it treats the same way.
fn terminate(member: &mut Member) {
    let pid = member.child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !sent {
        tracing::debug!(pid, "`kill -TERM` failed; closing the member's stdin instead");
        member.stdin = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(partitions: i32) -> Members {
        Members::new(
            PathBuf::from("/nonexistent"),
            Vec::new(),
            (0..partitions).collect(),
        )
    }

    /// A live member backed by a short-lived real process, so the bookkeeping can be tested.
    fn add_live(m: &mut Members, id: u32) {
        let child = Command::new("true").spawn().unwrap();
        m.live.insert(
            id,
            Member {
                child,
                stdin: None,
                reader: None,
            },
        );
    }

    #[test]
    fn stable_needs_every_live_member_disjoint_and_full_cover() {
        let mut m = members(4);
        assert!(!m.stable(), "no members");
        add_live(&mut m, 0);
        add_live(&mut m, 1);
        m.assigned.insert(0, vec![0, 1]);
        assert!(!m.stable(), "member 1 has not reported");
        m.assigned.insert(1, vec![2]);
        assert!(!m.stable(), "partition 3 uncovered");
        m.assigned.insert(1, vec![1, 2, 3]);
        assert!(!m.stable(), "partition 1 twice (a stale assignment)");
        m.assigned.insert(1, vec![2, 3]);
        assert!(m.stable());
        m.assigned.insert(0, vec![]);
        m.assigned.insert(1, vec![0, 1, 2, 3]);
        assert!(!m.stable(), "member 0 got nothing though partitions go round");
    }

    #[test]
    fn more_members_than_partitions_may_leave_some_idle() {
        let mut m = members(1);
        add_live(&mut m, 0);
        add_live(&mut m, 1);
        m.assigned.insert(0, vec![]);
        m.assigned.insert(1, vec![0]);
        assert!(m.stable());
    }

    #[test]
    fn jitter_fractions_stay_in_range_and_vary() {
        let mut j = Jitter(12345);
        let draws: Vec<f64> = (0..1000).map(|_| j.next_fraction()).collect();
        assert!(draws.iter().all(|f| (0.0..1.0).contains(f)));
        let low = draws.iter().filter(|f| **f < 0.5).count();
        assert!((400..600).contains(&low), "{low} of 1000 below 0.5");
    }

    #[test]
    fn member_command_line_passes_the_settings_through() {
        let args = RebalanceArgs {
            bootstrap: "h:1".into(),
            topic: "t".into(),
            partitions: 12,
            members: 3,
            trials: None,
            session_timeout_ms: Some(6000),
            heartbeat_interval_ms: None,
            timeout_secs: 10,
            properties: vec![("client.id".into(), "x".into())],
        };
        let line = member_args(&args, "g", Instant::now()).join(" ");
        assert!(
            line.starts_with("bench group-member --bootstrap h:1 --group g --topic t"),
            "{line}"
        );
        assert!(line.contains("--session-timeout-ms 6000"), "{line}");
        assert!(!line.contains("heartbeat"), "{line}");
        assert!(line.ends_with("-X client.id=x"), "{line}");
    }
}
