//! The pure stage of a gc run that decides what goes: the plan (from the model's reachability,
//! `model::mark`), the plan as a file, and what became of a sweep. Functions of the model only;
//! nothing here reads or writes storage.

pub mod by_rule;
pub mod killed;
pub mod outcome;
pub mod plan;
pub mod planfile;
pub mod planned;
