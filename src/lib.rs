//! regsweep: offline garbage collection for the storage of a CNCF distribution registry.
//!
//! The data flows one way, and the folders are its stages: [`storage`] (one door: a
//! [`storage::location::Location`] opened once) -> [`stages::scan`] (storage to model) ->
//! [`model::manifest`] (references) -> [`policy`] (tag decisions) -> [`model::mark`]
//! (reachability) -> [`gc::plan`] (what goes) -> [`stages::sweep`] or [`report`]. Imports only
//! point down this map, floor by floor, never up and never in a cycle; the `import_map` test
//! fails on one that does:
//!
//! 0. leaves: `error` (a kind by cause, with the path; exit codes), `endpoint` (URLs checked
//!    before a client sees them), `progress` (the trait the core reports to), `units` (human
//!    sizes and ages), `output` (files written whole), `yaml` (the one door to the YAML crate),
//!    `spill` (lists mapped back from temporary files: the bounded mode)
//! 1. [`model`]: `digest`, `duration`, `manifest` (bytes to references), `paths` (the layout's
//!    vocabulary), `inuse` (images in use), `coverage` (intervals of proof) -> `pulls` (what a ledger says), `values` -> `catalog` (parsed manifests) -> the layout, decisions and `Rules`;
//!    `walk` (the one manifest-graph walk) -> `mark` (reachability)
//! 2. [`storage`]: `seam` (what every backend does) and `Capabilities`; the backends `fs` (over
//!    `dirfd`: handles, no symlink followed), `bucket` (S3, Azure and GCS through object_store: each service's `root` and client, its request `gate` and what it fetches `ahead`) and `memory`; `lock`;
//!    `location` (the one place a backend is picked); `conformance` (one suite, every backend)
//! 2. [`ledger`]: the pull ledger (SQLite), the registry's events and log lines, the webhook
//!    receiver (`pulls listen`)
//! 2. [`gc`]: the pure stages after the mark: `plan` (what goes), `by_rule` (what each rule
//!    frees), `planfile` (the plan `apply` reads), `outcome` (what became of a sweep)
//! 3. [`policy`]: retention policies, `semver` and `used` (what is used: images in use, pull
//!    rules' refusals) (pure; its safety net marks with `model::mark`)
//! 3. [`inspect`]: `usage` and `integrity`, the pure analyses behind `du` and `check`
//! 3. [`stages`]: written once against the seam: `read` (the layout's pieces), `scan` and
//!    `repository`, `manifests` (with the manifest `cache`), `freshness`, `verify`, `sweep`,
//!    `trash`
//! 4. [`config`]: validated configs, and `registry` (the registry's own config file, read as
//!    strictly as the registry reads it)
//! 5. [`live`]: the live registry beside the storage: its blob-descriptor cache (Redis
//!    eviction) and `probe` (asking it what it still claims)
//! 5. [`pipeline`]: a `Session` opened once on a storage, planned on and swept
//! 6. [`report`]: text and JSON reports, `metrics`
//! 7. [`commands`]: `gc` (with `live`, its steps with the live registry), `apply`, `check`, `du`
//! 8. [`cli`]: clap arguments to validated configs, dispatch, signals, progress bars (`bars`)

pub mod cli;
pub mod commands;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod gc;
#[cfg(test)]
mod import_map;
pub mod inspect;
pub mod ledger;
pub mod live;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod policy;
pub mod progress;
pub mod report;
pub mod spill;
pub mod stages;
pub mod storage;
#[cfg(test)]
mod testutil;
pub mod units;
pub mod yaml;

pub use error::{Error, ErrorKind, ExitCode, Result};
pub use model::digest::Digest;
