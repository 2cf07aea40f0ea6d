//! Where a vessel's lines come from: replayed log files, or live UDP, TCP and serial feeds.

pub mod live;
pub mod net;
pub mod replay;
pub mod serial;
