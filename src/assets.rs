//! The data marionette ships with: the bundled avatars (the repository's `assets/avatars`) and the
//! published model configs (`crates/fomm/configs`, compiled in by [`fomm::load::presets`], so they are
//! never looked up by path).
//!
//! The bundled avatars are taken from
//! 1. the installed data, `<prefix>/share/marionette/avatars` for an executable in `<prefix>/bin`
//!    (the Debian package: `/usr/bin/marionette` and `/usr/share/marionette/avatars`), when that
//!    folder holds pictures;
//! 2. else the copies compiled into the binary, so `cargo run`, `cargo install --path .` and a
//!    binary copied anywhere have them with no files around it (about 0.85 MB).

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::media::MediaError;
use crate::media::frames::{decode_image, list_image_files, to_rgb8_like_pillow};

/// The default portrait's file stem (the one `marionette run` animates without `--avatar`).
pub const DEFAULT_AVATAR: &str = "eileen-collins";

/// The repository's `assets/avatars`, compiled in, in name order.
const BUILT_IN: &[(&str, &[u8])] = &[
    (
        "eileen-collins.png",
        include_bytes!("../assets/avatars/eileen-collins.png"),
    ),
    (
        "grace-hopper.jpg",
        include_bytes!("../assets/avatars/grace-hopper.jpg"),
    ),
];

/// Where the bundled avatars come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundledAvatars {
    /// A folder of pictures, read in name order (the installed data).
    Dir(PathBuf),
    /// The copies compiled into the binary.
    BuiltIn,
}

/// One bundled avatar, still encoded.
#[derive(Debug, Clone)]
pub struct AvatarFile {
    /// The file name, e.g. `eileen-collins.png`.
    pub file_name: String,
    /// The file it was read from; for a built-in one, its path in the repository
    /// (`assets/avatars/NAME`), which errors and listings show.
    pub path: PathBuf,
    /// The encoded picture.
    pub bytes: Cow<'static, [u8]>,
}

impl AvatarFile {
    /// The file name without its extension: `eileen-collins`.
    pub fn stem(&self) -> String {
        Path::new(&self.file_name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Decoded as 8-bit RGB, the way [`crate::media::frames::load_rgb`] decodes a file.
    pub fn decode(&self) -> Result<RgbImage, MediaError> {
        Ok(to_rgb8_like_pillow(decode_image(&self.bytes, &self.path)?))
    }
}

impl BundledAvatars {
    /// The installed folder if there is one with pictures in it, else the built-in copies.
    pub fn find() -> Self {
        installed_data_dir()
            .map(|d| d.join("avatars"))
            .filter(|d| list_image_files(d).is_ok())
            .map(Self::Dir)
            .unwrap_or(Self::BuiltIn)
    }

    /// The avatars, in name order.
    pub fn files(&self) -> Result<Vec<AvatarFile>, MediaError> {
        match self {
            Self::BuiltIn => Ok(BUILT_IN
                .iter()
                .map(|(name, bytes)| AvatarFile {
                    file_name: (*name).to_string(),
                    path: Path::new("assets/avatars").join(name),
                    bytes: Cow::Borrowed(*bytes),
                })
                .collect()),
            Self::Dir(dir) => list_image_files(dir)?
                .into_iter()
                .map(|path| {
                    let bytes = std::fs::read(&path).map_err(|source| MediaError::Io {
                        action: "read the image",
                        path: path.clone(),
                        source,
                    })?;
                    Ok(AvatarFile {
                        file_name: path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        path,
                        bytes: Cow::Owned(bytes),
                    })
                })
                .collect(),
        }
    }

    /// The default portrait ([`DEFAULT_AVATAR`]): from this source when it has it, else the
    /// built-in copy (which every binary has).
    pub fn default_avatar(&self) -> Result<AvatarFile, MediaError> {
        let from = |files: Vec<AvatarFile>| files.into_iter().find(|f| f.stem() == DEFAULT_AVATAR);
        if let Some(f) = from(self.files()?) {
            return Ok(f);
        }
        from(Self::BuiltIn.files()?).ok_or_else(|| MediaError::NoImages {
            dir: PathBuf::from("assets/avatars"),
            extensions: format!("{DEFAULT_AVATAR}.*"),
        })
    }
}

impl fmt::Display for BundledAvatars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dir(d) => write!(f, "{}", d.display()),
            Self::BuiltIn => f.write_str("built into the binary"),
        }
    }
}

/// `<prefix>/share/marionette` for the running executable `<prefix>/bin/marionette`, when that
/// folder exists.
pub fn installed_data_dir() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|exe| data_dir_for(&exe))
}

/// `<prefix>/share/marionette` for an executable at `<prefix>/bin/NAME`, when that folder exists.
pub fn data_dir_for(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?.parent()?.join("share").join("marionette");
    dir.is_dir().then_some(dir)
}
