//! The commands, each owning its config, its run and its output: `gc` runs the pipeline (open,
//! plan, sweep, report) with `live` (its steps with the live registry); `apply` carries out a
//! reviewed plan; `check` and `du` inspect; `policy` checks a policy; `trash` restores, lists
//! and empties the trash. The CLI only builds their configs and prints.

pub mod apply;
pub mod check;
pub mod du;
pub mod evidence;
pub mod gc;
pub mod killed;
pub mod live;
pub mod page;
pub mod policy;
pub mod proxy;
pub mod pulls;
pub mod pulls_status;
pub mod trash;
