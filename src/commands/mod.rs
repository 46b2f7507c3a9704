//! The commands: `gc` runs the pipeline (load, decide, sweep, report) and is the entry the others
//! reuse; `apply` carries out a reviewed plan; `check` and `du` inspect.

pub mod apply;
pub mod check;
pub mod du;
pub mod gc;
pub mod live;
