//! Helpers for the classic engine's tests and its evaluation example: real photos, known warps, errors.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::{Device, Tensor};

/// `../shared/fixtures/fomm` beside the repository (also tried two levels up, for a scratch crate), or
/// `$MARIONETTE_FIXTURES`.
pub fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("MARIONETTE_FIXTURES") {
        return PathBuf::from(dir);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for up in ["../shared/fixtures/fomm", "../../shared/fixtures/fomm"] {
        let dir = root.join(up);
        if dir.join("README.md").exists() {
            return dir;
        }
    }
    panic!(
        "FOMM fixtures not found beside {}: set MARIONETTE_FIXTURES",
        root.display()
    );
}

/// The repository's own bundled avatars (`assets/avatars`; a clean clone has them, whatever lies
/// beside it).
pub fn avatars_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/avatars")
}

/// A face photo cropped to a square and resized: planar RGB (3, size, size) in [0, 1], plus the face box
/// (x0, y0, x1, y1) as fractions of the frame, where errors are measured.
pub struct Photo {
    pub name: &'static str,
    pub size: usize,
    pub rgb: Vec<f32>,
    pub face: [f64; 4],
}

/// The three test photos: the FOMM fixture portrait (already a face crop) and face crops of the two
/// avatars, at `size` x `size`.
pub fn photos(size: usize) -> Vec<Photo> {
    // (name, file, square crop (x, y, side) in the file, face box)
    type Spec = (&'static str, PathBuf, Option<[u32; 3]>, [f64; 4]);
    let specs: [Spec; 3] = [
        (
            "fixture",
            fixtures_dir().join("tiny-input-source.png"),
            None,
            [0.30, 0.15, 0.75, 0.70],
        ),
        (
            "collins",
            avatars_dir().join("eileen-collins.png"),
            Some([96, 0, 320]),
            [0.20, 0.08, 0.65, 0.60],
        ),
        (
            "hopper",
            avatars_dir().join("grace-hopper.jpg"),
            Some([90, 50, 340]),
            [0.20, 0.15, 0.85, 0.80],
        ),
    ];
    specs
        .into_iter()
        .map(|(name, path, crop, face)| {
            let img = image::open(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
                .to_rgb8();
            let img = match crop {
                Some([x, y, s]) => image::imageops::crop_imm(&img, x, y, s, s).to_image(),
                None => img,
            };
            let img = image::imageops::resize(
                &img,
                size as u32,
                size as u32,
                image::imageops::FilterType::Triangle,
            );
            let mut rgb = vec![0f32; 3 * size * size];
            for (x, y, p) in img.enumerate_pixels() {
                for c in 0..3 {
                    rgb[c * size * size + y as usize * size + x as usize] = p[c] as f32 / 255.0;
                }
            }
            Photo {
                name,
                size,
                rgb,
                face,
            }
        })
        .collect()
}

pub fn tensor(rgb: &[f32], size: usize) -> Tensor {
    Tensor::from_vec(rgb.to_vec(), (1, 3, size, size), &Device::Cpu).unwrap()
}

pub fn tensor_data(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// Bilinear warp of a planar (3, n, n) image: output pixel z takes the image at `backward(z)`, zero
/// outside (as grid_sample with zero padding).
pub fn warp(rgb: &[f32], n: usize, backward: impl Fn(f64, f64) -> (f64, f64)) -> Vec<f32> {
    let mut out = vec![0f32; rgb.len()];
    let plane = n * n;
    for y in 0..n {
        for x in 0..n {
            let (sx, sy) = backward(x as f64, y as f64);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            for c in 0..3 {
                let mut v = 0f64;
                for (dx, dy, w) in [
                    (0, 0, (1.0 - fx) * (1.0 - fy)),
                    (1, 0, fx * (1.0 - fy)),
                    (0, 1, (1.0 - fx) * fy),
                    (1, 1, fx * fy),
                ] {
                    let (xi, yi) = (x0 as i64 + dx, y0 as i64 + dy);
                    if xi >= 0 && yi >= 0 && (xi as usize) < n && (yi as usize) < n {
                        v += w * rgb[c * plane + yi as usize * n + xi as usize] as f64;
                    }
                }
                out[c * plane + y * n + x] = v as f32;
            }
        }
    }
    out
}

/// A known motion relative to frame 0: the library's [`marionette::synth::KnownMotion`] (the
/// motions `marionette make-sequences` writes), applied here to planar f32 images.
pub use marionette::synth::KnownMotion as Known;

/// Warps a test photo by a known motion, unrounded (planar f32).
pub trait Apply {
    /// The photo moved, black where the motion reaches outside it (what a camera frame shows).
    fn apply(&self, photo: &Photo) -> Vec<f32>;
    /// The photo moved, its edge filling where the motion reaches outside it: what the classic
    /// engine should output when the photo is also the portrait (it never shows black bands).
    fn apply_filled(&self, photo: &Photo) -> Vec<f32>;
}

impl Apply for Known {
    fn apply(&self, photo: &Photo) -> Vec<f32> {
        let n = photo.size;
        let side = n as u32;
        warp(&photo.rgb, n, |x, y| self.backward(side, side, x, y))
    }

    fn apply_filled(&self, photo: &Photo) -> Vec<f32> {
        let n = photo.size;
        let side = n as u32;
        let last = (n - 1) as f64;
        warp(&photo.rgb, n, |x, y| {
            let (sx, sy) = self.backward(side, side, x, y);
            (sx.clamp(0.0, last), sy.clamp(0.0, last))
        })
    }
}

/// Mean absolute error over the face box of two planar (3, n, n) images.
pub fn face_mae(a: &[f32], b: &[f32], n: usize, face: [f64; 4]) -> f64 {
    let px = |f: f64| (f * n as f64).round() as usize;
    let (x0, y0, x1, y1) = (px(face[0]), px(face[1]), px(face[2]), px(face[3]));
    let mut sum = 0f64;
    let mut count = 0usize;
    for c in 0..3 {
        for y in y0..y1 {
            for x in x0..x1 {
                let i = c * n * n + y * n + x;
                sum += (a[i] - b[i]).abs() as f64;
                count += 1;
            }
        }
    }
    sum / count.max(1) as f64
}
