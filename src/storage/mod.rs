//! The registry's storage, at the bottom of the house: the seam every backend implements
//! (`seam`), the filesystem backend (`fs`, over the handles of `dirfd`) and the object-store
//! one (`bucket`: S3, Azure and GCS, each reached by its own `root`), `memory` (for tests of the stages), the lock, and `location`, the one place a backend is picked.
//! Nothing here imports anything above `model` and `error`.

pub mod bucket;
pub mod conformance;
pub mod dirfd;
pub mod fs;
pub mod location;
pub mod lock;
pub mod memory;
pub mod seam;
