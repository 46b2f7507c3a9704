//! Everything that touches the registry's storage: the layout's paths and names, reading it into
//! the model, the sweep, the trash and the lock, all through folder handles (`dirfd`).

pub mod dirfd;
pub mod layout;
pub mod lock;
pub mod scan;
pub mod sweep;
pub mod trash;
