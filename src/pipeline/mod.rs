//! The live pipeline: capture -> inference -> sinks, each on its own named thread, joined by
//! latest-wins channels. The only module that knows every stage.

pub mod channel;
pub mod framing;
pub mod queue;
pub mod runner;
pub mod stats;
