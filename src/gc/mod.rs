//! The pure stages of a gc run: the walk of the manifest graph, reachability, and the plan of
//! what goes. Functions of the model only; nothing here reads or writes storage.

pub mod mark;
pub mod outcome;
pub mod plan;
pub mod planfile;
pub mod walk;
