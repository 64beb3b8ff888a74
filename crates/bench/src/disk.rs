//! A sequential-write disk probe, the yardstick beside broker figures: a broker that must put
//! bytes on this disk cannot sustain more than this.
//!
//! It does what `dd if=/dev/zero of=FILE bs=1M count=N conv=fdatasync` does: write N MiB in
//! 1 MiB blocks through the page cache, then `fdatasync` once, and time the whole thing.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::report::BYTES_PER_MB;

/// Size of each write, one MiB as `dd bs=1M`.
const BLOCK: usize = 1024 * 1024;

/// Writes `mb` MiB sequentially to a scratch file in `dir`, syncs it to the device, removes it,
/// and returns the rate in MiB per second.
///
/// # Errors
/// `InvalidInput` when `mb` is zero; otherwise whatever creating, writing or syncing the
/// scratch file fails with (the file is removed in every case).
pub fn disk_write_mb_per_sec(dir: &Path, mb: usize) -> io::Result<f64> {
    if mb == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "disk probe needs at least 1 MiB",
        ));
    }
    let scratch = ScratchFile::create(dir)?;
    // Not all zeros, so a compressing or deduplicating filesystem is not flattered.
    let block: Vec<u8> = (0..BLOCK).map(|i| (i % 251) as u8).collect();
    let started = Instant::now();
    let mut file = &scratch.file;
    for _ in 0..mb {
        file.write_all(&block)?;
    }
    file.sync_data()?;
    let secs = started.elapsed().as_secs_f64();
    Ok(if secs > 0.0 {
        (mb * BLOCK) as f64 / BYTES_PER_MB / secs
    } else {
        f64::INFINITY
    })
}

/// A file that is deleted when dropped.
struct ScratchFile {
    file: File,
    path: PathBuf,
}

impl ScratchFile {
    fn create(dir: &Path) -> io::Result<Self> {
        let path = dir.join(format!(".sapper-bench-disk-{}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(Self { file, path })
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        // Best effort: failing to remove a scratch file must not mask the measurement's result.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_positive_rate_and_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let rate = disk_write_mb_per_sec(dir.path(), 2).unwrap();
        assert!(rate > 0.0, "{rate}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn zero_megabytes_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = disk_write_mb_per_sec(dir.path(), 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(disk_write_mb_per_sec(&missing, 1).is_err());
    }
}
