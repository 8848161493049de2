//! The portraits to pick from: the bundled avatars ([`crate::assets`]) and the user's own folder
//! (`$XDG_DATA_HOME/marionette/avatars`). Adding one crops it to a square the user chose and
//! saves it there as PNG; removing deletes the file (bundled ones cannot be removed). Each portrait
//! has a stable id, so the engine's per-portrait cache makes switching back instant.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;

use crate::assets::{AvatarFile, BundledAvatars};
use crate::media::MediaError;

/// Stored portraits are at most this big (FOMM's published models take 256; 512 leaves room).
pub const PORTRAIT_SIDE: u32 = 512;
/// Thumbnail side in the gallery strip.
pub const THUMB_SIDE: u32 = 96;

/// Why a portrait could not be loaded, added or removed.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    /// A picture or folder could not be read.
    #[error(transparent)]
    Media(#[from] MediaError),
    /// Creating the user's folder or deleting a portrait's file failed.
    #[error("{path}: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A new portrait could not be written (or there is no data directory to write it to).
    #[error("{path}: could not save the portrait: {message}")]
    Save {
        /// The file it was to be saved as (`avatars` when there is no data directory).
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Removing a bundled portrait was asked for.
    #[error("{name} is a bundled portrait and cannot be removed")]
    Bundled {
        /// The portrait's name.
        name: String,
    },
    /// The index is past the end of the gallery.
    #[error("no portrait number {0}")]
    NoSuchPortrait(usize),
    /// The crop box (then the image's width and height) leaves no square inside the image.
    #[error("the crop box {0:?} is not inside the {1}x{2} image")]
    BadCrop(CropBox, u32, u32),
}

/// A square region of an image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Side length.
    pub side: f32,
}

impl CropBox {
    /// A first guess at a square around the face, without a face detector: the largest square,
    /// centred across, and for a tall picture a little above centre (portraits put the face in
    /// the upper part; the head-and-shoulders rule of thumb).
    pub fn suggest(width: u32, height: u32) -> Self {
        let (w, h) = (width as f32, height as f32);
        let side = w.min(h);
        Self {
            x: (w - side) / 2.0,
            y: (h - side) * 0.3,
            side,
        }
    }

    /// Moved and shrunk as needed to lie inside a `width` x `height` image, at least 16 px.
    pub fn clamped(self, width: u32, height: u32) -> Self {
        let (w, h) = (width as f32, height as f32);
        let side = self.side.clamp(16.0_f32.min(w.min(h)), w.min(h));
        Self {
            x: self.x.clamp(0.0, w - side),
            y: self.y.clamp(0.0, h - side),
            side,
        }
    }
}

/// One portrait of the gallery.
#[derive(Debug, Clone)]
pub struct Portrait {
    /// `bundled:NAME` or the file's path: what the settings store.
    pub key: String,
    /// Shown under the thumbnail.
    pub name: String,
    /// The file (for a built-in bundled portrait: its path in the repository, `assets/avatars/..`).
    pub path: PathBuf,
    /// Whether it ships with the program (and cannot be removed).
    pub bundled: bool,
    /// The engine's cache key.
    pub id: u64,
    /// Square, at most [`PORTRAIT_SIDE`].
    pub image: Arc<RgbImage>,
    /// [`THUMB_SIDE`] square.
    pub thumbnail: Arc<RgbImage>,
}

/// "grace-hopper" -> "Grace Hopper".
fn title_case(stem: &str) -> String {
    stem.split(['-', '_', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn id_of(key: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn square_of(img: &RgbImage, side: u32) -> RgbImage {
    let sq = crate::media::resize::center_square_crop(img);
    if sq.width() <= side {
        sq
    } else {
        image::imageops::resize(&sq, side, side, image::imageops::FilterType::Triangle)
    }
}

impl Portrait {
    /// A user portrait from its file.
    fn load(path: &Path) -> Result<Self, GalleryError> {
        let img = crate::media::frames::load_rgb(path)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self::new(
            img,
            path.display().to_string(),
            &stem,
            path,
            false,
        ))
    }

    /// A bundled portrait (key `bundled:STEM`, whichever folder or binary it came from).
    fn bundled(file: &AvatarFile) -> Result<Self, GalleryError> {
        let stem = file.stem();
        Ok(Self::new(
            file.decode()?,
            format!("bundled:{stem}"),
            &stem,
            &file.path,
            true,
        ))
    }

    fn new(img: RgbImage, key: String, stem: &str, path: &Path, bundled: bool) -> Self {
        let image = square_of(&img, PORTRAIT_SIDE);
        let thumbnail = image::imageops::resize(
            &image,
            THUMB_SIDE,
            THUMB_SIDE,
            image::imageops::FilterType::Triangle,
        );
        Self {
            id: id_of(&key),
            key,
            name: title_case(stem),
            path: path.to_path_buf(),
            bundled,
            image: Arc::new(image),
            thumbnail: Arc::new(thumbnail),
        }
    }
}

/// `$XDG_DATA_HOME/marionette/avatars` (usually ~/.local/share/marionette/avatars).
pub fn user_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("marionette").join("avatars"))
}

/// The bundled portraits followed by the user's.
pub struct Gallery {
    /// The portraits, in display order (added ones at the end).
    pub portraits: Vec<Portrait>,
    user_dir: Option<PathBuf>,
}

impl Gallery {
    /// Loads the bundled portraits, then the user's, each in name order. Files that cannot be
    /// read are skipped and returned as errors to show; they are never fatal.
    pub fn load(
        bundled: Option<&BundledAvatars>,
        user: Option<&Path>,
    ) -> (Self, Vec<GalleryError>) {
        let mut portraits = Vec::new();
        let mut errors = Vec::new();
        if let Some(bundled) = bundled {
            match bundled.files() {
                Ok(files) => {
                    for f in &files {
                        match Portrait::bundled(f) {
                            Ok(p) => portraits.push(p),
                            Err(e) => errors.push(e),
                        }
                    }
                }
                Err(e) => errors.push(e.into()),
            }
        }
        if let Some(dir) = user.filter(|d| d.is_dir()) {
            match crate::media::frames::list_image_files(dir) {
                Ok(files) => {
                    for f in files {
                        match Portrait::load(&f) {
                            Ok(p) => portraits.push(p),
                            Err(e) => errors.push(e),
                        }
                    }
                }
                Err(e) => errors.push(e.into()),
            }
        }
        (
            Self {
                portraits,
                user_dir: user.map(Path::to_path_buf),
            },
            errors,
        )
    }

    /// Number of portraits.
    pub fn len(&self) -> usize {
        self.portraits.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.portraits.is_empty()
    }

    /// The portrait at `index`.
    pub fn get(&self, index: usize) -> Option<&Portrait> {
        self.portraits.get(index)
    }

    /// Index of the portrait with this [`Portrait::key`].
    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.portraits.iter().position(|p| p.key == key)
    }

    /// Adds `crop` of `image` as a new portrait named after `name`, saved as PNG in the user's
    /// folder (a number is appended when the name is taken). Returns its index.
    pub fn add(
        &mut self,
        image: &RgbImage,
        crop: CropBox,
        name: &str,
    ) -> Result<usize, GalleryError> {
        let (w, h) = image.dimensions();
        let c = crop.clamped(w, h);
        if !(c.side >= 1.0 && c.x + c.side <= w as f32 + 0.5 && c.y + c.side <= h as f32 + 0.5) {
            return Err(GalleryError::BadCrop(crop, w, h));
        }
        let dir = self.user_dir.clone().ok_or_else(|| GalleryError::Save {
            path: PathBuf::from("avatars"),
            message: "no data directory: set XDG_DATA_HOME or HOME".into(),
        })?;
        std::fs::create_dir_all(&dir).map_err(|source| GalleryError::Io {
            path: dir.clone(),
            source,
        })?;
        let (x, y, side) = (
            c.x.round() as u32,
            c.y.round() as u32,
            c.side.round() as u32,
        );
        let side = side.min(w - x.min(w)).min(h - y.min(h)).max(1);
        let cut = image::imageops::crop_imm(image, x, y, side, side).to_image();
        let out = if side > PORTRAIT_SIDE {
            image::imageops::resize(
                &cut,
                PORTRAIT_SIDE,
                PORTRAIT_SIDE,
                image::imageops::FilterType::Lanczos3,
            )
        } else {
            cut
        };
        let base: String = name
            .chars()
            .map(|ch| if ch.is_alphanumeric() { ch } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .to_lowercase();
        let base = if base.is_empty() {
            "portrait".into()
        } else {
            base
        };
        let mut path = dir.join(format!("{base}.png"));
        let mut n = 2;
        while path.exists() {
            path = dir.join(format!("{base}-{n}.png"));
            n += 1;
        }
        out.save(&path).map_err(|e| GalleryError::Save {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let portrait = Portrait::load(&path)?;
        self.portraits.push(portrait);
        Ok(self.portraits.len() - 1)
    }

    /// Deletes a user portrait's file and removes it from the gallery.
    pub fn remove(&mut self, index: usize) -> Result<Portrait, GalleryError> {
        let p = self
            .portraits
            .get(index)
            .ok_or(GalleryError::NoSuchPortrait(index))?;
        if p.bundled {
            return Err(GalleryError::Bundled {
                name: p.name.clone(),
            });
        }
        match std::fs::remove_file(&p.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(GalleryError::Io {
                    path: p.path.clone(),
                    source,
                });
            }
        }
        Ok(self.portraits.remove(index))
    }
}
