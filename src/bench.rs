//! Speed measurements: per stage and per frame, median over repeated runs, on random weights of
//! a config's structure (no checkpoint needed).

use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

use fomm::load::config::FommConfig;
use fomm::model::{Fomm, ModelError};
use fomm::motion_transfer::{MotionTransfer, TransferOptions};
use fomm::ops::grid_sample::grid_sample;
use fomm::ops::precision::PrecisionPlan;

/// Median milliseconds of each stage.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The config's name.
    pub config: String,
    /// The device, as Candle's `Debug` prints it.
    pub device: String,
    /// The convolutions' precision (the lowest of the plan).
    pub precision: String,
    /// Rayon's thread count.
    pub threads: usize,
    /// Timed runs per stage (after one warm-up run); grid_sample takes at least 20.
    pub iterations: usize,
    /// Once per portrait: keypoints of the source + generator encoder.
    pub prepare_source_ms: f64,
    /// The keypoint detector on one driving frame.
    pub kp_detector_ms: f64,
    /// Relative motion transfer with adapt scale (`normalize_kp`).
    pub motion_transfer_ms: f64,
    /// The dense motion network.
    pub dense_motion_ms: f64,
    /// Warp, occlusion, bottleneck, up blocks and final conv (the decoder proper).
    pub decoder_ms: f64,
    /// The whole per-frame step with the cached source: keypoints of the driving frame, motion
    /// transfer, dense motion and decoder.
    pub per_frame_ms: f64,
    /// 1000 / `per_frame_ms`.
    pub fps: f64,
    /// grid_sample on (1,256,64,64) features with a 64x64 grid.
    pub grid_sample_features_ms: f64,
    /// grid_sample on a (1,3,256,256) image with a 256x256 grid.
    pub grid_sample_image_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs `f` `iters` times after one warm-up and returns the median in milliseconds.
fn time<T>(iters: usize, mut f: impl FnMut() -> Result<T, ModelError>) -> Result<f64, ModelError> {
    f()?;
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters.max(1) {
        let t = Instant::now();
        let out = f()?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        drop(out);
    }
    Ok(median(samples))
}

/// [`time`] for work on `device`: waits for the device to finish each run (GPU work is queued
/// asynchronously, so without this only the launch would be timed).
fn time_on<T>(
    device: &Device,
    iters: usize,
    mut f: impl FnMut() -> Result<T, ModelError>,
) -> Result<f64, ModelError> {
    time(iters, || {
        let out = f()?;
        device.synchronize()?;
        Ok(out)
    })
}

/// A random smooth sampling grid around the identity (what FOMM's deformations look like).
fn test_grid(n: usize, h: usize, w: usize, device: &Device) -> candle_core::Result<Tensor> {
    let id = fomm::util::make_coordinate_grid(h, w, device)?.unsqueeze(0)?;
    let noise = (Tensor::rand(-0.05f32, 0.05, (n, h, w, 2), device))?;
    id.broadcast_add(&noise)
}

/// Times each FOMM stage on random weights of `config`'s structure, with random source and
/// driving images, at the precision `precision`: the median of `iters` runs after a warm-up.
pub fn run(
    config: &FommConfig,
    device: &Device,
    iters: usize,
    precision: PrecisionPlan,
) -> Result<BenchReport, ModelError> {
    let model = Fomm::random(config, device, precision)?;
    let (h, w) = config.frame_size;
    let c = config.model.common_params.num_channels;
    let source = Tensor::rand(0f32, 1.0, (1, c, h, w), device)?;
    let driving = Tensor::rand(0f32, 1.0, (1, c, h, w), device)?;
    let ac = model.options.align_corners;

    let prepare_source_ms = time_on(device, iters, || model.prepare_source(&source))?;
    let prepared = model.prepare_source(&source)?;
    let kp_detector_ms = time_on(device, iters, || model.detect(&driving))?;
    let kp_driving = model.detect(&driving)?;
    let mut transfer = MotionTransfer::new(TransferOptions::default());
    let motion_transfer_ms = time_on(device, iters, || {
        Ok(transfer.transfer(&prepared.keypoints, &kp_driving)?)
    })?;
    let kp_new = transfer.transfer(&prepared.keypoints, &kp_driving)?;
    let generator = model.generator();
    let dense_motion_ms = time_on(device, iters, || {
        Ok(generator.dense_motion(&prepared.encoded, &prepared.keypoints, &kp_new, ac)?)
    })?;
    let motion = generator.dense_motion(&prepared.encoded, &prepared.keypoints, &kp_new, ac)?;
    let decoder_ms = time_on(device, iters, || {
        Ok(generator.decode_with_motion(&prepared.encoded, motion.clone(), ac, false)?)
    })?;
    let mut step_transfer = MotionTransfer::new(TransferOptions::default());
    let per_frame_ms = time_on(device, iters, || {
        let kp = model.detect(&driving)?;
        let kp = step_transfer.transfer(&prepared.keypoints, &kp)?;
        let out = model.render(&prepared, &kp, false)?;
        // Make sure the work is done (lazy devices) by reading one value back.
        out.prediction.flatten_all()?.get(0)?.to_scalar::<f32>()?;
        Ok(out)
    })?;

    let feats = Tensor::rand(0f32, 1.0, (1, 256, 64, 64), device)?;
    let grid64 = test_grid(1, 64, 64, device)?;
    let grid_sample_features_ms = time_on(device, iters.max(20), || {
        Ok(grid_sample(&feats, &grid64, true)?)
    })?;
    let image = Tensor::rand(0f32, 1.0, (1, 3, 256, 256), device)?;
    let grid256 = test_grid(1, 256, 256, device)?;
    let grid_sample_image_ms = time_on(device, iters.max(20), || {
        Ok(grid_sample(&image, &grid256, true)?)
    })?;

    Ok(BenchReport {
        config: config.name.clone(),
        device: format!("{device:?}"),
        precision: precision.headline().to_string(),
        threads: rayon::current_num_threads(),
        iterations: iters,
        prepare_source_ms,
        kp_detector_ms,
        motion_transfer_ms,
        dense_motion_ms,
        decoder_ms,
        per_frame_ms,
        fps: 1000.0 / per_frame_ms,
        grid_sample_features_ms,
        grid_sample_image_ms,
    })
}

/// Speed of the classic engine at one frame size.
#[derive(Debug, Clone, Serialize)]
pub struct ClassicBenchReport {
    /// "classic".
    pub engine: &'static str,
    /// Frame side in pixels.
    pub size: usize,
    /// Rayon's thread count.
    pub threads: usize,
    /// Driving frames timed (at least 2).
    pub frames: usize,
    /// Once per portrait: its texture analysis.
    pub set_source_ms: f64,
    /// The calibration frame (corner detection and templates on D1).
    pub calibrate_ms: f64,
    /// Median of one driving frame: tracking, local fits, flow and warp.
    pub per_frame_ms: f64,
    /// 90th percentile of the same.
    pub p90_ms: f64,
    /// 1000 / `per_frame_ms`.
    pub fps: f64,
}

/// Times the classic engine on `photo` (square, any size; resized to `size`) moving by a known
/// smooth motion (rotation, scaling, shift and wobble of [`crate::synth`]'s "combo2", swept back and
/// forth), after one calibration frame. The driving frames are made before timing starts.
pub fn run_classic(
    photo: &image::RgbImage,
    size: usize,
    frames: usize,
) -> Result<ClassicBenchReport, ModelError> {
    use crate::engine::classic::{ClassicEngine, ClassicParams};
    use crate::synth::{square_photo, standard_motions, warp};
    let err = |e: crate::engine::classic::ClassicError| ModelError::Input(e.to_string());
    let side = u32::try_from(size).map_err(|_| ModelError::Input("size too large".into()))?;
    let photo = square_photo(photo, side);
    let motion = standard_motions(side)
        .into_iter()
        .find(|(name, _)| *name == "combo2")
        .map(|(_, m)| m)
        .ok_or_else(|| ModelError::Input("the combo2 motion is missing".into()))?;
    let to_tensor = |img: &image::RgbImage| crate::media::resize::to_model_tensor(img, side, side);
    let tensor =
        |img: &image::RgbImage| to_tensor(img).map_err(|e| ModelError::Input(e.to_string()));
    let frames = frames.max(2);
    let driving: Vec<Tensor> = (0..frames)
        .map(|i| {
            let t = (i as f64 / frames as f64 * std::f64::consts::TAU)
                .sin()
                .abs();
            let m = motion.lerp(t);
            tensor(&warp(&photo, |x, y| m.backward(side, side, x, y)))
        })
        .collect::<Result<_, _>>()?;
    let source = tensor(&photo)?;
    let mut engine = ClassicEngine::new(ClassicParams::default(), (size, size)).map_err(err)?;
    let t = Instant::now();
    engine.set_source(&source).map_err(err)?;
    let set_source_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    engine.animate(&source).map_err(err)?;
    let calibrate_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut samples = Vec::with_capacity(frames);
    for d in &driving {
        let t = Instant::now();
        let out = engine.animate(d).map_err(err)?;
        samples.push(t.elapsed().as_secs_f64() * 1e3);
        drop(out);
    }
    samples.sort_by(f64::total_cmp);
    let p90 = samples
        .get(samples.len() * 9 / 10)
        .copied()
        .unwrap_or(f64::NAN);
    let per_frame_ms = median(samples);
    Ok(ClassicBenchReport {
        engine: "classic",
        size,
        threads: rayon::current_num_threads(),
        frames,
        set_source_ms,
        calibrate_ms,
        per_frame_ms,
        p90_ms: p90,
        fps: 1e3 / per_frame_ms,
    })
}

/// Per-frame cost of everything in the live loop except the model, at a camera size (median ms).
#[derive(Debug, Clone, Serialize)]
pub struct LiveBenchReport {
    /// The camera frame size ("1280x720").
    pub camera: String,
    /// The model's input side in pixels.
    pub model_side: u32,
    /// The output frame: the camera size, YUYV.
    pub output: String,
    /// Timed runs per stage (after one warm-up run).
    pub iterations: usize,
    /// MJPG (JPEG quality 85) to RGB, the way the webcam source decodes it.
    pub decode_mjpg_ms: f64,
    /// YUYV to RGB (BT.601), for cameras that send YUYV.
    pub decode_yuyv_ms: f64,
    /// The square crop resampled to the model's input side.
    pub crop_resize_ms: f64,
    /// The model's RGB input and output tensors (to and from planar f32).
    pub tensor_io_ms: f64,
    /// The square avatar placed on the filled background at the output size.
    pub compose_ms: f64,
    /// RGB to YUYV (BT.601 limited range).
    pub convert_yuyv_ms: f64,
    /// RGB to I420.
    pub convert_i420_ms: f64,
    /// Compose and YUYV fused, row by row (what the virtual camera does).
    pub compose_yuyv_ms: f64,
    /// The invisible mark on an animated frame at the model's size (what the live loop does).
    pub mark_ms: f64,
    /// The invisible mark on a frame of the camera's size (the most it could cost).
    pub mark_camera_ms: f64,
    /// write() of the YUYV frame into a file in /dev/shm (v4l2loopback's write is the same copy
    /// into kernel memory).
    pub write_ms: f64,
    /// decode (MJPG) + crop + tensors + compose-to-YUYV + write.
    pub total_mjpg_ms: f64,
    /// decode (YUYV) + crop + tensors + compose-to-YUYV + write.
    pub total_yuyv_ms: f64,
}

/// `photo` as a camera at `size` sends it: RGB, MJPG (quality 85) and YUYV.
fn camera_frames(
    photo: &image::RgbImage,
    size: crate::frame::Size,
) -> Result<(image::RgbImage, Vec<u8>, Vec<u8>), ModelError> {
    let cam = image::imageops::resize(
        photo,
        size.width,
        size.height,
        image::imageops::FilterType::Triangle,
    );
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85)
        .encode_image(&cam)
        .map_err(|e| ModelError::Input(e.to_string()))?;
    let mut yuyv = vec![0u8; size.pixels() * 2];
    crate::output::convert::rgb_to_yuyv(cam.as_raw(), size, &mut yuyv);
    Ok((cam, jpeg, yuyv))
}

/// Milliseconds to write `bytes` over the start of a file, as a virtual camera's device gets a
/// frame (in /dev/shm where there is one, so that a disk does not count).
fn time_write(iters: usize, bytes: &[u8]) -> Result<f64, ModelError> {
    use std::io::{Seek, Write};
    let input = |e: std::io::Error| ModelError::Input(e.to_string());
    let name = format!("marionette-bench-{}", std::process::id());
    let shm = std::path::Path::new("/dev/shm");
    let path = if shm.is_dir() {
        shm.join(name)
    } else {
        std::env::temp_dir().join(name)
    };
    let mut file = std::fs::File::create(&path).map_err(input)?;
    let ms = time(iters, || {
        file.seek(std::io::SeekFrom::Start(0))
            .and_then(|_| file.write_all(bytes))
            .map_err(input)
    });
    let _ = std::fs::remove_file(&path);
    ms
}

/// Times the non-model stages of the live loop on a real photo at `camera` size.
pub fn run_live_path(
    photo: &image::RgbImage,
    camera: crate::frame::Size,
    model_side: u32,
    iters: usize,
) -> Result<LiveBenchReport, ModelError> {
    use crate::capture::webcam::{decode_mjpg, yuyv_to_rgb};
    use crate::frame::Frame;
    use crate::output::compose::compose_into;
    use crate::output::convert::{rgb_to_i420, rgb_to_yuyv};
    use crate::pipeline::framing::{Crop, crop_resize};
    let input = |e: String| ModelError::Input(e);
    let (cam, jpeg, yuyv) = camera_frames(photo, camera)?;
    let frame = Frame::from_image(0, Instant::now(), cam.clone());
    let crop = Crop::default();
    let side = model_side as usize;
    let square = crop_resize(&frame, &crop, model_side);
    let avatar = Frame::new(
        0,
        Instant::now(),
        crate::frame::Size::new(model_side, model_side),
        square.clone(),
    )
    .map_err(|e| input(e.to_string()))?;
    let mut composed = vec![0u8; camera.pixels() * 3];
    let mut out_yuyv = vec![0u8; camera.pixels() * 2];
    let mut out_i420 = vec![0u8; camera.pixels() * 3 / 2];
    let decode_mjpg_ms = time(iters, || {
        decode_mjpg(&jpeg).map_err(|e| input(e.to_string()))
    })?;
    let decode_yuyv_ms = time(iters, || Ok::<_, ModelError>(yuyv_to_rgb(&yuyv, camera)))?;
    let crop_resize_ms = time(iters, || {
        Ok::<_, ModelError>(crop_resize(&frame, &crop, model_side))
    })?;
    let tensor_io_ms = time(iters, || {
        let t = crate::media::resize::rgb8_to_tensor(&square, side, side)
            .map_err(|e| input(e.to_string()))?;
        crate::media::resize::tensor_to_rgb8(&t).map_err(|e| input(e.to_string()))
    })?;
    let compose_ms = time(iters, || {
        compose_into(&avatar, camera, false, &mut composed);
        Ok::<_, ModelError>(())
    })?;
    let convert_yuyv_ms = time(iters, || {
        rgb_to_yuyv(&composed, camera, &mut out_yuyv);
        Ok::<_, ModelError>(())
    })?;
    let convert_i420_ms = time(iters, || {
        rgb_to_i420(&composed, camera, &mut out_i420);
        Ok::<_, ModelError>(())
    })?;
    let mut fused = Vec::new();
    let compose_yuyv_ms = time(iters, || {
        crate::output::compose::compose_convert(
            &avatar,
            camera,
            false,
            crate::output::convert::PixelFormat::Yuyv,
            &mut fused,
        );
        Ok::<_, ModelError>(())
    })?;
    let mut marker = crate::watermark::Marker::new(crate::watermark::Payload::new(
        crate::watermark::MarkEngine::Fomm,
    ));
    let mut animated = square.clone();
    let mark_ms = time(iters, || {
        marker.mark_rgb(&mut animated, side as u32, side as u32);
        Ok::<_, ModelError>(())
    })?;
    let mark_camera_ms = time(iters, || {
        marker.mark_rgb(&mut composed, camera.width, camera.height);
        Ok::<_, ModelError>(())
    })?;
    let write_ms = time_write(iters, &out_yuyv)?;
    let rest = crop_resize_ms + tensor_io_ms + mark_ms + compose_yuyv_ms + write_ms;
    Ok(LiveBenchReport {
        camera: camera.to_string(),
        model_side,
        output: format!("{camera} YUYV"),
        iterations: iters,
        decode_mjpg_ms,
        decode_yuyv_ms,
        crop_resize_ms,
        tensor_io_ms,
        compose_ms,
        convert_yuyv_ms,
        convert_i420_ms,
        compose_yuyv_ms,
        mark_ms,
        mark_camera_ms,
        write_ms,
        total_mjpg_ms: decode_mjpg_ms + rest,
        total_yuyv_ms: decode_yuyv_ms + rest,
    })
}
