//! Following the committed metadata from a broker: long-poll `FetchMetadata`, apply the
//! batches to a local image exactly as the voters' state machines do, publish the image and
//! the deltas.
//!
//! Applying is deterministic, so the broker's image equals the voters' at the same index. A
//! batch that does not apply (it never should) makes the follower start over from an empty
//! image, which the next answer rebuilds (the whole image, or every batch still in the ring).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::client::{CallPolicy, Lane};
use crate::controller::api::{ControllerRequest, ControllerResponse, MetadataUpdate};
use crate::image::{MetadataDelta, MetadataImage};
use crate::raft::state_machine::{apply_batch, diff, AppliedDelta};

/// The metadata a broker has applied: the image as of a Raft log index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerMetadata {
    pub index: u64,
    pub image: Arc<MetadataImage>,
}

/// Where the follower publishes.
pub(crate) struct Outputs {
    pub metadata: watch::Sender<Arc<BrokerMetadata>>,
    pub deltas: broadcast::Sender<AppliedDelta>,
}

/// Polls until `cancel`, waiting up to `max_wait` per poll.
pub(crate) async fn follow(
    mut lane: Lane,
    max_wait: Duration,
    request_timeout: Duration,
    out: Outputs,
    cancel: CancellationToken,
) {
    let policy = CallPolicy {
        timeout: max_wait + request_timeout,
        retry_for: request_timeout,
    };
    let mut index = 0u64;
    let mut image = MetadataImage::default();
    let mut resync = false;
    loop {
        let request = ControllerRequest::FetchMetadata {
            after_index: index,
            max_wait_ms: u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX),
        };
        let answer = tokio::select! {
            _ = cancel.cancelled() => return,
            answer = lane.call(&request, policy) => answer,
        };
        let update = match answer {
            Ok(ControllerResponse::Metadata(update)) => update,
            Ok(_) => {
                tracing::warn!("metadata fetch answered with the wrong message");
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "metadata fetch failed; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
        };
        let before = index;
        let mut deltas = Vec::new();
        // After a start-over (or a whole image), the change is told as one diff against what
        // was last published rather than batch by batch.
        let mut whole = resync;
        match update {
            MetadataUpdate::Image {
                index: at,
                image: new,
            } => {
                if at < index && !resync {
                    continue; // a voter that is behind us; we keep what we have
                }
                image = new;
                index = at;
                whole = true;
                resync = false;
            }
            MetadataUpdate::Batches { batches, last_index } => {
                let mut failed = false;
                for (at, records) in batches {
                    if at <= index {
                        continue;
                    }
                    match apply_batch(&mut image, &records) {
                        Ok(delta) => {
                            deltas.push(AppliedDelta { index: at, delta });
                            index = at;
                        }
                        Err((position, e)) => {
                            tracing::error!(index = at, position, error = %e, "metadata batch does not apply here; starting over");
                            failed = true;
                            break;
                        }
                    }
                }
                if failed {
                    image = MetadataImage::default();
                    index = 0;
                    resync = true;
                    continue;
                }
                index = index.max(last_index);
                resync = false;
            }
        }
        if index == before && !whole {
            continue;
        }
        if whole {
            let published = out.metadata.borrow().image.clone();
            deltas = vec![AppliedDelta {
                index,
                delta: diff(&published, &image),
            }];
        }
        let changed = !deltas.iter().all(|d| d.delta == MetadataDelta::default());
        let image_now = if changed {
            Arc::new(image.clone())
        } else {
            out.metadata.borrow().image.clone()
        };
        out.metadata.send_replace(Arc::new(BrokerMetadata {
            index,
            image: image_now,
        }));
        for delta in deltas {
            // No subscriber is fine.
            let _ = out.deltas.send(delta);
        }
    }
}
