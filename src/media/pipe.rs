//! A long-running `ffmpeg` that reads its input from our pipe and writes its output to another,
//! frame by frame, for as long as a stream lasts (the remote frames' H.264 coder and decoder).
//!
//! Unlike a video file's reader or writer, the caller both feeds and reads the process, so it
//! must never block on one pipe while the process waits on the other: the output is taken by a
//! thread of the caller's ([`FfmpegPipe::take_output`]) that reads it as it comes, while the
//! caller writes the input. The process is killed and reaped when the
//! pipe is dropped, or at once from another thread through a [`PipeKiller`] (which unblocks a
//! thread stuck reading a process that stopped answering).

use std::io::Write;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::MediaError;
use super::video::{FfmpegTools, drain_stderr, ffmpeg_has_fps_mode, spawn_error, tail_text};

/// A running `ffmpeg` with both ends piped.
pub struct FfmpegPipe {
    child: Arc<Mutex<Child>>,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// What it does, for messages ("coding frames as H.264").
    action: &'static str,
}

/// Kills a pipe's process from another thread.
#[derive(Clone)]
pub struct PipeKiller(Arc<Mutex<Child>>);

impl PipeKiller {
    /// Kills the process (nothing happens if it has ended).
    pub fn kill(&self) {
        if let Ok(mut c) = self.0.lock() {
            let _ = c.kill();
        }
    }
}

/// The arguments that make `ffmpeg` pass every frame through as it comes, without dropping or
/// repeating any by its timestamps (`-fps_mode` since FFmpeg 5.1, `-vsync` before).
pub fn passthrough_args(tools: &FfmpegTools) -> Result<[&'static str; 2], MediaError> {
    Ok(if ffmpeg_has_fps_mode(&tools.ffmpeg)? {
        ["-fps_mode", "passthrough"]
    } else {
        ["-vsync", "passthrough"]
    })
}

impl FfmpegPipe {
    /// Starts `ffmpeg` with `args` (after `-hide_banner -nostats -loglevel error`).
    pub fn spawn(
        tools: &FfmpegTools,
        args: &[&str],
        action: &'static str,
    ) -> Result<Self, MediaError> {
        let mut cmd = Command::new(&tools.ffmpeg);
        cmd.args(["-hide_banner", "-nostats", "-loglevel", "error"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| spawn_error(&tools.ffmpeg, "ffmpeg", e))?;
        let stderr = child.stderr.take().map(drain_stderr);
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(MediaError::ToolSpawn {
                program: "ffmpeg".into(),
                source: std::io::Error::other("its pipes were not opened"),
            });
        };
        Ok(Self {
            child: Arc::new(Mutex::new(child)),
            stdin: Some(stdin),
            stdout: Some(stdout),
            stderr,
            action,
        })
    }

    /// A handle that kills the process from another thread.
    pub fn killer(&self) -> PipeKiller {
        PipeKiller(self.child.clone())
    }

    /// Writes all of `bytes` to its input.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), MediaError> {
        let r = match self.stdin.as_mut() {
            Some(s) => s.write_all(bytes).and_then(|()| s.flush()),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        };
        r.map_err(|e| self.failed(&e))
    }

    /// Its output, once, for a thread that reads it as it comes.
    pub fn take_output(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// The process failed us (`e`: what went wrong on our side): kill it and say why, with the
    /// end of what it printed.
    pub fn failed(&mut self, e: &dyn std::fmt::Display) -> MediaError {
        self.stdin = None;
        let status = match self.child.lock() {
            Ok(mut c) => {
                let _ = c.kill();
                c.wait()
                    .map_or_else(|w| w.to_string(), |s| format!("{s} ({e})"))
            }
            Err(_) => e.to_string(),
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        MediaError::PipeFailed {
            action: self.action,
            status,
            stderr: tail_text(&stderr),
        }
    }
}

impl Drop for FfmpegPipe {
    fn drop(&mut self) {
        self.stdin = None;
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(h) = self.stderr.take() {
            let _ = h.join();
        }
    }
}
