//! Where the data that ships with marionette is found: the bundled portraits
//! (`assets/avatars`).

use std::path::PathBuf;

/// The bundled avatars' folder: ./assets/avatars, or beside the executable (installed, or
/// `target/<profile>` inside the repository), or share/marionette.
pub fn bundled_dir() -> Option<PathBuf> {
    let name = "assets/avatars";
    let mut candidates = vec![PathBuf::from(name)];
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        candidates.push(dir.join(name));
        candidates.push(dir.join("../..").join(name));
        candidates.push(dir.join("../../..").join(name));
        candidates.push(dir.join("../share/marionette").join(name));
    }
    candidates.into_iter().find(|p| p.is_dir())
}

/// The bundled default portrait (Eileen Collins), when the bundled avatars are found.
pub fn default_portrait() -> Option<PathBuf> {
    bundled_dir()
        .map(|d| d.join("eileen-collins.png"))
        .filter(|p| p.is_file())
}
