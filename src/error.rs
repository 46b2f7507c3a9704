//! The library's error type, one variant per cause, each that concerns a file naming its path;
//! and the process exit codes.

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The cause is in the message: not also a `source`, or `{:#}` would print it twice.
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error(
        "{path}: not a registry storage root (expected a docker/registry/v2 folder below it; give the registry's rootdirectory)"
    )]
    NotARegistry { path: PathBuf },
    #[error("{path}: {message}")]
    RegistryConfig { path: PathBuf, message: String },
    /// A policy file that does not parse or validate; exits with the usage code.
    #[error("{path}: {message}")]
    Policy { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Locked { path: PathBuf, message: String },
    /// A plan file that apply refuses.
    #[error("{path}: {message}")]
    Plan { path: PathBuf, message: String },
    /// The layout exceeds what the model can index (4-byte blob indices).
    #[error("{path}: {message}")]
    TooLarge { path: PathBuf, message: String },
    /// An object store that cannot be used: unreachable, no such bucket, refused credentials.
    #[error("{url}: {message}")]
    ObjectStore { url: String, message: String },
    /// A trash folder or run record that is refused (not a trash, edited, of another registry).
    #[error("{path}: {message}")]
    Trash { path: PathBuf, message: String },
    /// A manifest cache file that is not safe to read or replace.
    #[error("{path}: manifest cache {message}")]
    Cache { path: PathBuf, message: String },
    /// The live registry's cache could not be told what was swept, or still claims it.
    #[error("{what}: {message}")]
    LiveRegistry { what: String, message: String },
    /// The pull ledger cannot be opened, read or written (not a ledger, locked, read-only).
    #[error("{path}: {message}")]
    Ledger { path: PathBuf, message: String },
    /// An input file the run was given that does not parse (a list of images in use); exits
    /// with the usage code.
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    /// A value on the command line is invalid; exits with the usage code.
    #[error("{0}")]
    Usage(String),
    #[error("{path}: cannot write {what}: {cause}")]
    Report {
        path: PathBuf,
        /// What was being written: "the report", "the metrics".
        what: &'static str,
        cause: io::Error,
    },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, cause: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    /// The cause, for callers that act on it (the exit code, a retry) without matching every
    /// variant's fields.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Storage,
            Error::NotARegistry { .. } => ErrorKind::NotARegistry,
            Error::RegistryConfig { .. } => ErrorKind::RegistryConfig,
            Error::Policy { .. } => ErrorKind::Policy,
            Error::Locked { .. } => ErrorKind::Locked,
            Error::Plan { .. } => ErrorKind::Plan,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::Usage(_) => ErrorKind::Usage,
            Error::Report { .. } => ErrorKind::Output,
            Error::ObjectStore { .. } => ErrorKind::ObjectStore,
            Error::Cache { .. } => ErrorKind::Cache,
            Error::Trash { .. } => ErrorKind::Trash,
            Error::LiveRegistry { .. } => ErrorKind::LiveRegistry,
            Error::Ledger { .. } => ErrorKind::Ledger,
            Error::Input { .. } => ErrorKind::Input,
        }
    }

    /// The file or folder the error concerns, where there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. }
            | Error::NotARegistry { path }
            | Error::RegistryConfig { path, .. }
            | Error::Policy { path, .. }
            | Error::Locked { path, .. }
            | Error::Plan { path, .. }
            | Error::TooLarge { path, .. }
            | Error::Report { path, .. }
            | Error::Cache { path, .. }
            | Error::Trash { path, .. }
            | Error::Ledger { path, .. }
            | Error::Input { path, .. } => Some(path),
            Error::Usage(_) | Error::ObjectStore { .. } | Error::LiveRegistry { .. } => None,
        }
    }

    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> ExitCode {
        match self.kind() {
            ErrorKind::Usage | ErrorKind::Policy | ErrorKind::Input => ExitCode::Usage,
            _ => ExitCode::Error,
        }
    }
}

/// What an error is about, by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Reading or changing the storage failed.
    Storage,
    /// The root given is no registry layout.
    NotARegistry,
    /// The registry's config file cannot be used.
    RegistryConfig,
    /// The retention policy does not parse or validate.
    Policy,
    /// Another run holds the lock, or a stale lock waits for `--break-lock`.
    Locked,
    /// A plan (or trash record) is refused.
    Plan,
    /// The layout is larger than the model can index.
    TooLarge,
    /// The command line is invalid.
    Usage,
    /// The report or metrics cannot be written.
    Output,
    /// An object store cannot be reached or refuses the request.
    ObjectStore,
    /// The manifest cache file is refused.
    Cache,
    /// A trash folder or its run record is refused.
    Trash,
    /// The live registry's cache cannot be reached to evict what a sweep would remove.
    LiveRegistry,
    /// The pull ledger cannot be opened, read or written.
    Ledger,
    /// An input file (images in use) does not parse.
    Input,
}

impl ErrorKind {
    /// Every kind: docs/troubleshooting.md has a section for each (a test checks).
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::Storage,
        ErrorKind::NotARegistry,
        ErrorKind::RegistryConfig,
        ErrorKind::Policy,
        ErrorKind::Locked,
        ErrorKind::Plan,
        ErrorKind::TooLarge,
        ErrorKind::Usage,
        ErrorKind::Output,
        ErrorKind::ObjectStore,
        ErrorKind::Cache,
        ErrorKind::Trash,
        ErrorKind::LiveRegistry,
        ErrorKind::Ledger,
        ErrorKind::Input,
    ];

    /// The kind's name in docs/troubleshooting.md.
    pub fn word(self) -> &'static str {
        match self {
            ErrorKind::Storage => "storage",
            ErrorKind::NotARegistry => "not_a_registry",
            ErrorKind::RegistryConfig => "registry_config",
            ErrorKind::Policy => "policy",
            ErrorKind::Locked => "locked",
            ErrorKind::Plan => "plan",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Usage => "usage",
            ErrorKind::Output => "output",
            ErrorKind::ObjectStore => "object_store",
            ErrorKind::Cache => "cache",
            ErrorKind::Trash => "trash",
            ErrorKind::LiveRegistry => "live_registry",
            ErrorKind::Ledger => "ledger",
            ErrorKind::Input => "input",
        }
    }
}

/// Process exit codes; documented in the README and docs/troubleshooting.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Finished; nothing damaged was found.
    Ok = 0,
    /// An error stopped the run, or some deletions failed.
    Error = 1,
    /// The command line or one of its values is invalid.
    Usage = 2,
    /// Finished, but damaged objects were found (listed in the report).
    Damage = 3,
    /// Swept, but the live registry still claims some of what went (`--registry-url`):
    /// restart it (an in-memory cache) or evict (Redis) before the next push.
    StaleRegistry = 4,
}

impl ExitCode {
    /// Every code, in order: the man pages' EXIT STATUS and the README list them.
    pub const ALL: [ExitCode; 5] = [
        ExitCode::Ok,
        ExitCode::Error,
        ExitCode::Usage,
        ExitCode::Damage,
        ExitCode::StaleRegistry,
    ];

    /// The number the process exits with.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// What the code means, in a sentence.
    pub fn meaning(self) -> &'static str {
        match self {
            ExitCode::Ok => "Finished; nothing damaged was found.",
            ExitCode::Error => {
                "An error stopped the run (storage, lock, config, report), or some removals failed."
            }
            ExitCode::Usage => {
                "The command line, a policy file or an input file is invalid; nothing was changed."
            }
            ExitCode::Damage => {
                "Finished, but damaged objects were found (gc, du and check list or count them; gc deletes no blob while they hide references)."
            }
            ExitCode::StaleRegistry => {
                "Swept, but the live registry still claims some of what went (--registry-url): restart it (in-memory cache) or evict (Redis) before the next push."
            }
        }
    }
}

/// An I/O error's cause in words, without the OS error number or the path some crates add:
/// "Permission denied", "Read-only file system".
pub fn io_cause(e: &io::Error) -> String {
    // tempfile's errors append " at path ..." after the OS text: cut at the number.
    let text = e.to_string();
    match text.split_once(" (os error") {
        Some((cause, _)) => cause.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_paths_and_exit_codes() {
        let e = Error::io("/r", io::Error::from(io::ErrorKind::NotFound));
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert_eq!(e.path(), Some(Path::new("/r")));
        assert_eq!(e.exit_code(), ExitCode::Error);
        let p = Error::Policy {
            path: "p.yml".into(),
            message: "line 3: bad".into(),
        };
        assert_eq!((p.kind(), p.exit_code().code()), (ErrorKind::Policy, 2));
        let denied = io::Error::from_raw_os_error(13);
        assert_eq!(io_cause(&denied), "Permission denied");
        let u = Error::Usage("bad".into());
        assert_eq!((u.path(), u.exit_code()), (None, ExitCode::Usage));
    }
}
