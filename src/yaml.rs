//! The one door to the YAML crate. serde_yaml is archived upstream; the design names it, so it
//! stays, and a maintained fork (serde_yaml_ng, serde_norway: the same API) is a change of the
//! line below and of Cargo.toml.

pub use serde_yaml::{Value, from_str};
