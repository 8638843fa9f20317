//! The job machinery: the dispatcher that leases queued jobs to connected workers
//! ([`dispatch`]), and the handling of what workers report about them ([`events`]).

pub mod dispatch;
pub mod events;
pub mod placement;
pub mod reschedule;
pub mod spec;
