//! `marionette verify`: whether a video, an image, a folder of images or a camera carries
//! marionette's invisible mark ([`marionette::watermark`]), with its payload and the chance that
//! an unmarked input would look as marked.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use marionette::capture::FrameSource;
use marionette::capture::webcam::{CameraSelector, Webcam, WebcamRequest};
use marionette::media::frames::{list_image_files, load_rgb};
use marionette::media::video::{VideoReader, is_video_path};
use marionette::watermark::{Detector, P_FALSE_MAX, Verdict};

/// `marionette verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// A video, an image, or a folder of images.
    #[arg(required_unless_present = "camera")]
    pub input: Option<PathBuf>,
    /// Read a camera (an index, a device path or part of its name) instead of a file.
    #[arg(long, conflicts_with = "input")]
    pub camera: Option<CameraSelector>,
    /// Look at most at this many seconds of a video or a camera (a folder: this many seconds at
    /// 30 frames a second).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// One JSON line: {"marked": ..., "p_false": ..., "payload": ...}.
    #[arg(long)]
    pub json: bool,
}

/// Runs `verify`: exit status 0 whether or not the mark is found; an error only for an input
/// that cannot be read.
pub fn run(args: VerifyArgs) -> Result<()> {
    let mut detector = Detector::default();
    let what = match (&args.input, &args.camera) {
        (_, Some(camera)) => {
            read_camera(camera.clone(), args.seconds, &mut detector)?;
            format!("the camera {camera}")
        }
        (Some(input), None) => {
            read_file(input, args.seconds, &mut detector)?;
            input.display().to_string()
        }
        (None, None) => bail!("give a file, a folder or --camera"),
    };
    let verdict = detector.verdict();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "marked": verdict.marked,
                "p_false": verdict.p_false,
                "payload": verdict.payload.map(|p| format!("{:08x}", p.0)),
                "engine": verdict.payload.map(|p| p.engine()),
                "version": verdict.payload.map(|p| p.version()),
                "z": verdict.z,
                "frames": verdict.frames,
            })
        );
    } else {
        println!("{}", say(&what, &verdict));
    }
    Ok(())
}

/// The verdict in words.
fn say(what: &str, v: &Verdict) -> String {
    let frames = match v.frames {
        1 => "1 frame".to_string(),
        n => format!("{n} frames"),
    };
    match v.payload {
        Some(p) if v.marked => format!(
            "{what}: marked as made by marionette (format {}, engine {}); an unmarked input would \
             look this marked with a chance of at most {:.1e} ({frames} looked at)",
            p.version(),
            p.engine(),
            v.p_false
        ),
        _ => format!(
            "{what}: no marionette mark found ({frames} looked at; the best match would be as \
             strong in an unmarked input with a chance of {:.2}, and a mark is called found below \
             {P_FALSE_MAX:.0e}). A missing mark does not prove a video is real: blurring, \
             re-rendering or heavy editing remove it",
            v.p_false
        ),
    }
}

fn read_file(input: &std::path::Path, seconds: f64, d: &mut Detector) -> Result<()> {
    if input.is_dir() {
        let files = list_image_files(input)?;
        if files.is_empty() {
            bail!("{}: no images in the folder", input.display());
        }
        let most = (seconds * 30.0).ceil().max(1.0) as usize;
        for f in files.iter().take(most) {
            let img = load_rgb(f)?;
            d.add_rgb(img.as_raw(), img.width(), img.height());
        }
    } else if is_video_path(input) {
        let reader = VideoReader::open(input)
            .with_context(|| format!("reading the video {}", input.display()))?;
        let fps = reader.info().fps;
        let most = (seconds * fps).ceil().max(1.0) as usize;
        for frame in reader.take(most) {
            let img = frame.with_context(|| format!("reading the video {}", input.display()))?;
            d.add_rgb(img.as_raw(), img.width(), img.height());
        }
        if d.frames() == 0 {
            bail!("{}: no frames in the video", input.display());
        }
    } else {
        let img = load_rgb(input)?;
        d.add_rgb(img.as_raw(), img.width(), img.height());
    }
    Ok(())
}

fn read_camera(camera: CameraSelector, seconds: f64, d: &mut Detector) -> Result<()> {
    let mut cam = Webcam::open(camera, WebcamRequest::default())?;
    let until = Instant::now() + Duration::from_secs_f64(seconds.max(0.1));
    while Instant::now() < until {
        let f = cam.next_frame()?;
        d.add_rgb(&f.rgb, f.size.width, f.size.height);
    }
    Ok(())
}
