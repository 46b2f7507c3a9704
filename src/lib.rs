//! regsweep: offline garbage collection for the filesystem storage of a CNCF distribution registry.
//!
//! The data flows one way, and the folders are its stages: [`store::scan`] (storage to model)
//! -> [`model::manifest`] (references) -> [`policy`] (tag decisions) -> [`gc::mark`]
//! (reachability) -> [`gc::plan`] (what goes) -> [`store::sweep`] or [`report`]. Only [`store`]
//! touches storage. Imports only point down this map, never up and never in a cycle:
//!
//! - leaves: `error`, `progress`, `units` (human sizes and ages), `output` (files written whole)
//! - [`model`]: `digest`, `duration`, `manifest` (bytes to references), `base` -> `catalog`
//!   (parsed manifests) -> the layout, tag decisions and gc's `Rules`
//! - [`gc`]: the pure stages `walk` (the one manifest-graph walk) -> `mark` -> `plan`
//! - [`policy`]: retention policies and `semver` (pure; its safety net marks with `gc::mark`)
//! - [`inspect`]: `usage` and `integrity`, the pure analyses behind `du` and `check`
//! - [`store`]: `dirfd` (handles, no symlink followed), `layout`, `lock`, `scan`, `sweep`, `trash`
//! - [`report`]: text and JSON reports, `metrics`
//! - [`commands`]: `gc` (the pipeline's entry: load, decide, run) -> `apply`, `check`, `du`
//! - [`cli`]: clap arguments to validated configs (`config`), dispatch, signals

pub mod cli;
pub mod commands;
pub mod error;
pub mod gc;
pub mod inspect;
pub mod model;
pub mod output;
pub mod policy;
pub mod progress;
pub mod report;
pub mod store;
#[cfg(test)]
mod testutil;
pub mod units;

pub use error::{Error, ExitCode, Result};
pub use model::digest::Digest;
