//! Rendering on another machine: a client keeps the camera, the framing and the keypoint
//! detector and sends each driving frame's keypoints; a server renders the portrait in that pose
//! and sends the frame back.
//!
//! * [`wire`]: the messages, their layout and the bounds a peer is held to.
//! * [`channel`]: the encrypted channel they travel in, paired by a secret.
//! * [`server`]: `marionette serve`: clients in turn, each with its own engine.
//! * [`client`]: a connection to a server: motions up, frames down on a thread of their own.
//! * [`animator`]: `run --remote`: the engine that renders there when it can, here when not.

pub mod animator;
pub mod channel;
pub mod client;
pub mod codec;
pub mod server;
pub mod wire;
