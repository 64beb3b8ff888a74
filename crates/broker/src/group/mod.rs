//! Classic consumer groups (JoinGroup/SyncGroup/Heartbeat/LeaveGroup) and committed offsets.
//!
//! - [`state`]: the pure group state machine, tested without IO.
//! - [`offsets`]: a group's committed offsets.
//! - [`records`]: the key/value formats stored in `__consumer_offsets`.
//! - [`store`]: appends those records and replays them at start.
//! - [`coordinator`]: the IO shell: groups behind a lock, parked responses, timers.

pub mod coordinator;
pub mod offsets;
pub mod records;
pub mod settings;
pub mod state;
pub mod store;

pub use coordinator::GroupCoordinator;
pub use settings::{GroupArgs, GroupSettings};
