//! Who this data directory belongs to: `DATA_DIR/meta/identity.json` holds the cluster id and
//! node id (Kafka's `meta.properties`), and a lock file keeps a second broker off the same
//! directory.

use std::fs::File;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::durable_file::write_atomically;

#[derive(Debug, Error)]
pub enum IdentityError {
    #[error("data directory {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("data directory {dir} is in use by another process")]
    Locked { dir: String },
    #[error("data directory {dir} belongs to node {stored}, not node {configured}")]
    NodeMismatch {
        dir: String,
        stored: i32,
        configured: i32,
    },
    #[error("data directory {dir}: identity file is unreadable: {message}")]
    Corrupt { dir: String, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct StoredIdentity {
    version: u32,
    cluster_id: String,
    node_id: i32,
}

/// This broker's identity and the lock that proves it owns the data directory.
#[derive(Debug)]
pub struct Identity {
    pub cluster_id: String,
    pub node_id: i32,
    _lock: File,
}

impl Identity {
    /// Locks `data_dir`, then reads its identity or creates one for `node_id`.
    pub fn load_or_create(data_dir: &Path, node_id: i32) -> Result<Self, IdentityError> {
        let dir = data_dir.display().to_string();
        let io = |source| IdentityError::Io {
            dir: dir.clone(),
            source,
        };
        let meta = data_dir.join("meta");
        std::fs::create_dir_all(&meta).map_err(io)?;
        let lock = File::create(meta.join(".lock")).map_err(io)?;
        if lock.try_lock().is_err() {
            return Err(IdentityError::Locked { dir });
        }
        let path = meta.join("identity.json");
        let stored = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<StoredIdentity>(&bytes).map_err(|e| IdentityError::Corrupt {
                    dir: dir.clone(),
                    message: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let fresh = StoredIdentity {
                    version: 1,
                    cluster_id: new_cluster_id(),
                    node_id,
                };
                let bytes = serde_json::to_vec_pretty(&fresh).map_err(|e| IdentityError::Corrupt {
                    dir: dir.clone(),
                    message: e.to_string(),
                })?;
                write_atomically(&path, &bytes).map_err(io)?;
                fresh
            }
            Err(e) => return Err(io(e)),
        };
        if stored.node_id != node_id {
            return Err(IdentityError::NodeMismatch {
                dir,
                stored: stored.node_id,
                configured: node_id,
            });
        }
        Ok(Self {
            cluster_id: stored.cluster_id,
            node_id,
            _lock: lock,
        })
    }
}

/// A 22-character URL-safe id, the shape of Kafka's cluster ids.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = uuid::Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| {
            ALPHABET
                .get(((bits >> (i * 6)) & 63) as usize)
                .copied()
                .unwrap_or(b'A') as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_and_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path(), 1).unwrap();
        assert!(matches!(
            Identity::load_or_create(dir.path(), 1),
            Err(IdentityError::Locked { .. })
        ));
        let cluster = first.cluster_id.clone();
        drop(first);
        let again = Identity::load_or_create(dir.path(), 1).unwrap();
        assert_eq!(again.cluster_id, cluster);
        drop(again);
        assert!(matches!(
            Identity::load_or_create(dir.path(), 2),
            Err(IdentityError::NodeMismatch { .. })
        ));
    }
}
