//! The recovery checkpoint: one small file per log that says where the log starts, up to which
//! offset the data is known durable (the recovery point) and whether the last shutdown was
//! clean. Recovery reads it to decide how much of the log must be re-validated.
//!
//! Format: JSON, `{"version":1,"log_start_offset":..,"recovery_point":..,"clean_shutdown":..,
//! "active_segment_base":..,"active_segment_first_append_ms":..,"high_watermark":..}`
//! (`high_watermark` is optional: files written before replication lack it). It is replaced atomically
//! (tmp + fsync + rename + directory fsync), so it is either the old or the new checkpoint. A
//! missing or unreadable checkpoint means "unclean, recover everything".

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::durable;

/// File name of the checkpoint inside the log directory.
pub(crate) const FILE_NAME: &str = "recovery-checkpoint.json";
const VERSION: u8 = 1;

/// What the log knew about itself when it last wrote the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub version: u8,
    pub log_start_offset: i64,
    /// Every batch below this offset was fsynced (data and indexes).
    pub recovery_point: i64,
    /// Written last by `Log::close`; cleared by the next open.
    pub clean_shutdown: bool,
    /// Base offset of the active segment, so its first-append time survives a restart.
    pub active_segment_base: i64,
    /// Wall clock of the active segment's first append (drives `segment.ms`).
    pub active_segment_first_append_ms: Option<i64>,
    /// The replication high watermark when the checkpoint was written (Kafka keeps it in
    /// `replication-offset-checkpoint`); absent in files written before replication existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_watermark: Option<i64>,
}

impl Checkpoint {
    pub fn new(
        log_start_offset: i64,
        recovery_point: i64,
        clean_shutdown: bool,
        active_segment_base: i64,
        active_segment_first_append_ms: Option<i64>,
    ) -> Self {
        Self {
            version: VERSION,
            log_start_offset,
            recovery_point,
            clean_shutdown,
            active_segment_base,
            active_segment_first_append_ms,
            high_watermark: None,
        }
    }

    /// The same checkpoint recording `high_watermark`.
    pub fn with_high_watermark(mut self, high_watermark: i64) -> Self {
        self.high_watermark = Some(high_watermark);
        self
    }

    /// Reads the checkpoint in `dir`; `None` if it is missing, unreadable or of another version.
    pub fn read(dir: &Path) -> Option<Self> {
        let bytes = match fs::read(dir.join(FILE_NAME)) {
            Ok(b) => b,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot read log checkpoint");
                }
                return None;
            }
        };
        match serde_json::from_slice::<Checkpoint>(&bytes) {
            Ok(c) if c.version == VERSION => Some(c),
            Ok(c) => {
                tracing::warn!(dir = %dir.display(), version = c.version, "unknown checkpoint version");
                None
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "unparsable log checkpoint");
                None
            }
        }
    }

    /// Durably replaces the checkpoint in `dir`.
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(io::Error::other)?;
        durable::write_atomic(&dir.join(FILE_NAME), &bytes, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::read(dir.path()), None);
        let c = Checkpoint::new(3, 10, true, 8, Some(1234));
        c.write(dir.path()).unwrap();
        assert_eq!(Checkpoint::read(dir.path()), Some(c));
        fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        assert_eq!(Checkpoint::read(dir.path()), None);
        fs::write(dir.path().join(FILE_NAME), br#"{"version":9,"log_start_offset":0,"recovery_point":0,"clean_shutdown":true,"active_segment_base":0,"active_segment_first_append_ms":null}"#).unwrap();
        assert_eq!(Checkpoint::read(dir.path()), None);
    }

    #[test]
    fn high_watermark_is_optional() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), br#"{"version":1,"log_start_offset":0,"recovery_point":5,"clean_shutdown":true,"active_segment_base":0,"active_segment_first_append_ms":null}"#).unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap().high_watermark, None);
        let c = Checkpoint::new(0, 5, false, 0, None).with_high_watermark(4);
        c.write(dir.path()).unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap().high_watermark, Some(4));
    }
}
