//! Broker sessions as the active controller sees them: when each broker was last heard from,
//! on which connection, how far it has applied metadata, and whether it is shutting down.
//!
//! Pure bookkeeping over `Instant`s, so it is tested without clocks or sockets. A session
//! expires when no heartbeat came for the session timeout, or sooner when its heartbeat
//! connection closed and no heartbeat came on another one within the reconnect grace (a killed
//! broker closes its sockets; a paused or cut-off one does not, which the timeout covers).
//! Sessions exist only for registered brokers, so their number is bounded by the image.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::image::MetadataImage;
use crate::records::BrokerId;

/// Identifies one accepted connection on the controller listener.
pub type ConnId = u64;

/// One broker's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The registration this session belongs to.
    pub epoch: i64,
    pub deadline: Instant,
    /// The connection the last heartbeat came on.
    pub conn: Option<ConnId>,
    /// When that connection closed (cleared by the next heartbeat).
    pub closed_at: Option<Instant>,
    pub applied_index: u64,
    pub shutting_down: bool,
}

/// Every broker's session on the active controller.
#[derive(Debug)]
pub struct Sessions {
    timeout: Duration,
    reconnect_grace: Duration,
    by_broker: BTreeMap<BrokerId, Session>,
}

impl Sessions {
    /// Sessions for a controller that just became active: every registered broker gets
    /// `grace` to reach it before it can be fenced.
    pub fn new(
        image: &MetadataImage,
        now: Instant,
        timeout: Duration,
        reconnect_grace: Duration,
        grace: Duration,
    ) -> Self {
        let by_broker = image
            .brokers
            .iter()
            .map(|(id, b)| {
                let session = Session {
                    epoch: b.registration.epoch,
                    deadline: now + grace,
                    conn: None,
                    closed_at: None,
                    applied_index: 0,
                    shutting_down: false,
                };
                (*id, session)
            })
            .collect();
        Self {
            timeout,
            reconnect_grace,
            by_broker,
        }
    }

    pub fn get(&self, id: BrokerId) -> Option<&Session> {
        self.by_broker.get(&id)
    }

    /// A broker registered with `epoch`: a new session, whatever it had before.
    pub fn registered(&mut self, id: BrokerId, epoch: i64, now: Instant) {
        self.by_broker.insert(
            id,
            Session {
                epoch,
                deadline: now + self.timeout,
                conn: None,
                closed_at: None,
                applied_index: 0,
                shutting_down: false,
            },
        );
    }

    /// A heartbeat from a broker the image has registered with `epoch`. Returns the session.
    pub fn heartbeat(
        &mut self,
        id: BrokerId,
        epoch: i64,
        conn: ConnId,
        applied_index: u64,
        want_shutdown: bool,
        now: Instant,
    ) -> &Session {
        let timeout = self.timeout;
        let session = self.by_broker.entry(id).or_insert_with(|| Session {
            epoch,
            deadline: now,
            conn: None,
            closed_at: None,
            applied_index: 0,
            shutting_down: false,
        });
        if session.epoch != epoch {
            // The image moved to a new registration this controller had not seen.
            session.epoch = epoch;
            session.shutting_down = false;
            session.applied_index = 0;
        }
        session.deadline = now + timeout;
        session.conn = Some(conn);
        session.closed_at = None;
        session.applied_index = session.applied_index.max(applied_index);
        session.shutting_down |= want_shutdown;
        session
    }

    /// Connection `conn` closed; it matters only if it carried `id`'s last heartbeat.
    pub fn connection_closed(&mut self, id: BrokerId, conn: ConnId, now: Instant) {
        if let Some(session) = self.by_broker.get_mut(&id) {
            if session.conn == Some(conn) {
                session.conn = None;
                session.closed_at = Some(now);
            }
        }
    }

    /// Brokers the image has unfenced whose session has expired at `now`. A live broker
    /// without a session (its records were proposed by something other than this controller)
    /// gets one that starts now.
    pub fn expired(&mut self, image: &MetadataImage, now: Instant) -> Vec<BrokerId> {
        let mut expired = Vec::new();
        for broker in image.live_brokers() {
            let id = broker.registration.id;
            let session = self.by_broker.entry(id).or_insert_with(|| Session {
                epoch: broker.registration.epoch,
                deadline: now + self.timeout,
                conn: None,
                closed_at: None,
                applied_index: 0,
                shutting_down: false,
            });
            if now >= session.deadline || session.closed_at.is_some_and(|c| now >= c + self.reconnect_grace) {
                expired.push(id);
            }
        }
        expired
    }

    /// Whether `id` asked to shut down (it must not lead or join an ISR again).
    pub fn is_shutting_down(&self, id: BrokerId) -> bool {
        self.by_broker.get(&id).is_some_and(|s| s.shutting_down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::three_brokers_one_partition;

    const TIMEOUT: Duration = Duration::from_millis(1500);
    const RECONNECT: Duration = Duration::from_millis(200);

    #[test]
    fn a_silent_broker_expires_after_the_timeout_and_a_closed_one_after_the_grace() {
        let (image, _) = three_brokers_one_partition();
        let t0 = Instant::now();
        let mut sessions = Sessions::new(&image, t0, TIMEOUT, RECONNECT, Duration::from_secs(1));
        assert!(sessions.expired(&image, t0).is_empty());
        assert_eq!(
            sessions.expired(&image, t0 + Duration::from_secs(1)),
            vec![1, 2, 3]
        );
        for id in 1..=3 {
            sessions.heartbeat(id, i64::from(id) * 10, u64::try_from(id).unwrap(), 0, false, t0);
        }
        // Broker 2's connection closes; broker 3 reconnects in time on another connection.
        sessions.connection_closed(2, 2, t0);
        sessions.connection_closed(3, 3, t0);
        sessions.heartbeat(3, 30, 9, 0, false, t0 + Duration::from_millis(100));
        // A close of a connection that no longer carries heartbeats changes nothing.
        sessions.connection_closed(3, 3, t0 + Duration::from_millis(150));
        assert_eq!(sessions.expired(&image, t0 + RECONNECT), vec![2]);
        assert_eq!(sessions.expired(&image, t0 + TIMEOUT), vec![1, 2]);
    }

    #[test]
    fn a_new_epoch_resets_the_session() {
        let (image, _) = three_brokers_one_partition();
        let t0 = Instant::now();
        let mut sessions = Sessions::new(&image, t0, TIMEOUT, RECONNECT, TIMEOUT);
        sessions.heartbeat(1, 10, 1, 5, true, t0);
        assert!(sessions.is_shutting_down(1));
        let s = sessions.heartbeat(1, 11, 1, 0, false, t0).clone();
        assert!(!s.shutting_down);
        assert_eq!((s.epoch, s.applied_index), (11, 0));
    }
}
