//! Everything that touches the registry's storage, behind one seam (`seam`): the filesystem
//! backend (`fs`, over the handles of `dirfd`), and written once against the seam, reading it
//! into the model (`scan`), the sweep, the lock and the trash.

pub mod cache;
pub mod dirfd;
pub mod fs;
pub mod lock;
pub mod s3;
pub mod scan;
pub mod seam;
pub mod sweep;
pub mod trash;
