//! marionette: a portrait animated by a webcam or a video through the First Order Motion Model.
//!
//! * the `fomm` crate: FOMM in Candle (networks, checkpoints, configs, motion transfer).
//! * [`engine`]: the [`engine::Animator`] interface and its engines.
//! * [`media`]: images and videos in and out, with the original demo's preprocessing.
//! * [`models`]: where FOMM checkpoints are found on disk.
//! * [`motion`]: motion as data, and motion files.
//! * [`animate`]: offline animation of a portrait from a driving video or folder of frames.
//! * [`frame`], [`capture`], [`output`], [`pipeline`]: the live path.
//! * [`face`]: face detection for automatic framing.
//! * [`remote`]: rendering on another machine.
//! * [`bench`](mod@bench): speed measurements.
//! * [`synth`]: synthetic driving sequences with known motion, and the accuracy evaluation.
//! * [`app`]: the desktop window.
//! * [`assets`]: the bundled avatars, installed or compiled in.

#![deny(missing_docs)]

pub mod animate;
pub mod app;
pub mod assets;
pub mod bench;
pub mod capture;
pub mod channel;
pub mod devices;
pub mod engine;
pub mod face;
pub mod frame;
pub mod idle;
pub mod media;

pub mod models;
pub mod motion;
pub mod output;
pub mod pipeline;
pub mod provenance;
pub mod remote;
pub mod synth;
pub mod watermark;
