//! `--memory-limit`: how much a run may hold in memory (the bounded mode), for gc, du, check
//! and apply.

use clap::Args;

/// How much a run may hold in memory: the bounded mode.
#[derive(Debug, Args, Default)]
pub struct MemoryArgs {
    /// Hold about SIZE in memory at most (`8GiB`, `500MB`): the blob list and the layer links
    /// go to unnamed files in $TMPDIR, else /var/tmp (about 60 bytes a blob), read back mapped.
    /// Chosen by itself, without a SIZE, when the store looks larger than half the memory
    /// available. A SIZE below what the run needs stops it first, naming the least that would do.
    #[arg(long, value_name = "SIZE", value_parser = memory_limit)]
    pub memory_limit: Option<u64>,
}

fn memory_limit(text: &str) -> Result<u64, String> {
    crate::policy::budget::parse_size(text)
        .ok_or_else(|| format!("{text:?}: give a size, such as 8GiB or 500MB"))
}

impl MemoryArgs {
    pub(super) fn bound(&self) -> crate::spill::Bound {
        crate::spill::Bound {
            limit: self.memory_limit,
            disk_cap: super::faults::spill_cap(),
            available: super::faults::mem_available(),
        }
    }
}
