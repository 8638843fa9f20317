//! Newtypes built only through `parse`, so a value that exists is a valid one.

mod name;

pub use name::{NameError, WorkerName, Zone};
