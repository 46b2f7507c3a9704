//! The pure analyses behind `du` (sizes per repository and tag) and `check` (damage and leftovers).

pub mod integrity;
pub mod usage;
