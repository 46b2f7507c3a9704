//! regsweep: offline garbage collection for the storage of a CNCF distribution registry.
//!
//! The data flows one way, and the folders are its stages: [`store::scan`] (storage to model)
//! -> [`model::manifest`] (references) -> [`policy`] (tag decisions) -> [`gc::mark`]
//! (reachability) -> [`gc::plan`] (what goes) -> [`store::sweep`] or [`report`]. Only [`store`]
//! touches storage. Imports only point down this map, never up and never in a cycle:
//!
//! - leaves: `error` (a kind by cause, with the path; exit codes), `endpoint` (URLs checked
//!   before a client sees them), `progress` (the trait the core reports to), `units` (human
//!   sizes and ages), `output` (files written whole)
//! - [`model`]: `digest`, `duration`, `manifest` (bytes to references), `paths` (the layout's
//!   vocabulary), `base` -> `catalog` (parsed manifests) -> the layout, decisions and `Rules`
//! - [`gc`]: the pure stages `walk` (the one manifest-graph walk) -> `mark` -> `plan`; `outcome`
//! - [`policy`]: retention policies and `semver` (pure; its safety net marks with `gc::mark`)
//! - [`inspect`]: `usage` and `integrity`, the pure analyses behind `du` and `check`
//! - [`store`]: `seam` (the storage interface) with its backends `fs` (over `dirfd`: handles,
//!   no symlink followed) and `s3`; `lock`, `cache` (parsed manifests), and `scan`, `sweep`,
//!   `trash`, written against the seam
//! - [`live`]: the live registry beside the storage: its blob-descriptor cache (Redis eviction)
//!   and `probe` (asking it what it still claims)
//! - [`report`]: text and JSON reports, `metrics`
//! - [`config`] (validated configs) -> [`pipeline`] (the one way in: open a root and load its
//!   model; the pure decisions) -> [`commands`]: `gc`, `apply`, `check`, `du`
//! - [`cli`]: clap arguments to validated configs, dispatch, signals, progress bars (`bars`)

pub mod cli;
pub mod commands;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod gc;
pub mod inspect;
pub mod live;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod progress;
pub mod report;
pub mod stages;
pub mod storage;
#[cfg(test)]
mod testutil;
pub mod units;

pub use error::{Error, ErrorKind, ExitCode, Result};
pub use model::digest::Digest;
