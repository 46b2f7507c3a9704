//! Output files written whole: into a temporary name beside the target, then renamed over it,
//! so a reader never sees half a report.

use std::path::{Path, PathBuf};

/// A temporary name in the folder of `path`, for writing it whole and renaming.
pub fn temp_beside(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".regsweep-tmp-{}", std::process::id()));
    path.with_file_name(name)
}
