//! regsweep: offline garbage collection for the filesystem storage of a CNCF distribution registry.
//!
//! The data flows one way: [`scan`] (disk to model) -> [`manifest`] (references)
//! -> [`policy`] (tag decisions) -> [`mark`] (reachability) -> [`plan`] (what goes)
//! -> [`sweep`] or [`report`]. Only the storage modules ([`scan`], [`sweep`], [`trash`],
//! [`lock`], through [`dirfd`]) touch the disk. Imports only point down this map:
//!
//! - leaves: `digest`, `dirfd` (handles, no symlink followed), `duration`, `error`, `output`,
//!   `progress`, `semver`, `units`, `walk` (the one manifest-graph walk)
//! - names and bytes: `layout` (paths and name rules), `manifest` (bytes to references), `lock`,
//!   `metrics`
//! - the model: `model::base` -> `model::catalog` (parsed manifests) -> `model` (the layout,
//!   tag decisions)
//! - reading: `scan`; pure stages: `mark` -> `plan`, `policy`, `usage`, `integrity`
//! - writing: `trash`, `sweep`; rendering: `config`, `report`
//! - commands: `gc` -> `apply`, `check`, `du` -> `cli`

pub mod apply;
pub mod check;
pub mod cli;
pub mod config;
pub mod digest;
pub mod dirfd;
pub mod du;
pub mod duration;
pub mod error;
pub mod gc;
pub mod integrity;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod mark;
pub mod metrics;
pub mod model;
pub mod output;
pub mod plan;
pub mod policy;
pub mod progress;
pub mod report;
pub mod scan;
pub mod semver;
pub mod sweep;
#[cfg(test)]
mod testutil;
pub mod trash;
pub mod units;
pub mod usage;
pub mod walk;

pub use digest::Digest;
pub use error::{Error, Result};

/// Process exit codes; documented in the README.
pub mod exit {
    /// Finished; nothing damaged was found.
    pub const OK: i32 = 0;
    /// An error stopped the run, or some deletions failed.
    pub const ERROR: i32 = 1;
    /// The command line or one of its values is invalid.
    pub const USAGE: i32 = 2;
    /// Finished, but damaged objects were found (listed in the report).
    pub const DAMAGE: i32 = 3;
}
