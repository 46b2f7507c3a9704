//! The stages that read and change a registry's storage, written once against the seam of
//! [`crate::storage`]: reading it into the model (`scan`: the layout, the manifests with their
//! `cache`, what changed during the run, the digests), the `sweep` that carries out a plan, and
//! the `trash`; and `budget`, pure, the tags a space budget takes, projected by the mark.

pub mod budget;
pub mod cache;
pub mod freshness;
pub mod manifests;
pub mod quota;
pub mod read;
pub mod repository;
pub mod scan;
mod spilled;
pub mod sweep;
pub mod trash;
pub mod verify;

#[cfg(test)]
mod memory_tests;
