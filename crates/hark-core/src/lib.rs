//! Hark's domain model: pure types and functions with no I/O.
//!
//! Everything here is shared by the store, the engine and the API, so it must stay free of
//! async runtimes, SQL and HTTP.

pub mod audience;
pub mod batch;
pub mod conditions;
pub mod ids;
pub mod preferences;
pub mod recipient;
pub mod schedule;
pub mod time;
pub mod workflow;

pub use ids::new_id;
pub use time::{Clock, ManualClock, Millis, SystemClock};
