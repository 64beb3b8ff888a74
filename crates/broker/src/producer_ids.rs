//! Producer id allocation for InitProducerId.
//!
//! Ids must never repeat, even across restarts, or a new producer would inherit an old one's
//! sequence state. We reserve ids in blocks: the file `meta/producer-ids.json` records the end
//! of the reserved block before any id from it is handed out, so a crash skips at most the
//! unused rest of one block.

use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::durable_file::write_atomically;

const BLOCK_SIZE: i64 = 1000;

#[derive(Debug, Serialize, Deserialize)]
struct Reserved {
    version: u32,
    next_block_start: i64,
}

#[derive(Debug)]
struct State {
    next: i64,
    block_end: i64,
}

/// Hands out unique producer ids.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    state: Mutex<State>,
}

impl ProducerIdAllocator {
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let next = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Reserved>(&bytes)
                .map(|r| r.next_block_start)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            state: Mutex::new(State {
                next,
                block_end: next,
            }),
        })
    }

    /// The next unused producer id.
    pub fn allocate(&self) -> std::io::Result<i64> {
        let mut state = self.state.lock();
        if state.next >= state.block_end {
            let block_end = state.next + BLOCK_SIZE;
            let bytes = serde_json::to_vec(&Reserved {
                version: 1,
                next_block_start: block_end,
            })
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            write_atomically(&self.path, &bytes)?;
            state.block_end = block_end;
        }
        let id = state.next;
        state.next += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_repeat_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("producer-ids.json");
        let a = ProducerIdAllocator::open(path.clone()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.allocate().unwrap()).collect();
        drop(a);
        let b = ProducerIdAllocator::open(path).unwrap();
        let next = b.allocate().unwrap();
        assert!(first.iter().all(|&id| id < next));
    }
}
