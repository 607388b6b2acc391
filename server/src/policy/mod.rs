//! Policy bundles. Compiling and evaluating them is the pure core's
//! (`gatehouse_core::policy`, re-exported here); the service adds what needs I/O around
//! them: the watcher, reloads and their bookkeeping ([`reload`]).

pub use gatehouse_core::policy::*;

pub mod reload;
