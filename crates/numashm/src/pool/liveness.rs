//! Is a peer's process alive? Asked of the kernel (pidfd) through the one
//! place that does it (`numashm_region::process`), never of shared memory:
//! the pid and start time read from the rendezvous only say *which* process
//! to ask about. `Unknown` counts as alive everywhere in the pool layer.

pub use numashm_region::process::Liveness;
pub(crate) use numashm_region::process::{liveness, start_time};
