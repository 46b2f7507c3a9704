//! The library's error type, one variant per cause, each that concerns a file naming its path;
//! and the process exit codes.

use std::io;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
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
    /// A value on the command line is invalid; exits with the usage code.
    #[error("{0}")]
    Usage(String),
    #[error("{path}: cannot write {what}: {source}")]
    Report {
        path: PathBuf,
        /// What was being written: "the report", "the metrics".
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) | Error::Policy { .. } => ExitCode::Usage,
            _ => ExitCode::Error,
        }
    }
}

/// Process exit codes; documented in the README.
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
}

impl ExitCode {
    /// The number the process exits with.
    pub fn code(self) -> i32 {
        self as i32
    }
}
