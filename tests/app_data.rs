//! The window's data: settings that persist as TOML, and the portrait gallery (bundled and the
//! user's own, added with a square crop and removed again).

use marionette::app::gallery::{CropBox, Gallery, GalleryError};
use marionette::app::settings::{Settings, SettingsError, SourceSetting};
use marionette::assets::BundledAvatars;

fn bundled() -> BundledAvatars {
    BundledAvatars::Dir(std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/avatars"))
}

#[test]
fn settings_round_trip_through_toml() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nested/settings.toml");
    // Missing file: the defaults.
    assert_eq!(Settings::load(&path).unwrap(), Settings::default());
    let mut s = Settings {
        avatar: Some("bundled:grace-hopper".into()),
        source: Some(SourceSetting::Camera("/dev/video2".into())),
        ..Settings::default()
    };
    s.crop.zoom = 1.5;
    s.crop.pan_x = -0.25;
    s.overlay = true;
    s.overlay_opacity = 0.7;
    s.mirror_preview = false;
    s.mirror_output = true;
    s.passthrough = true;
    s.relative = false;
    s.keypoints = true;
    s.vcam.device = "/dev/video10".into();
    s.vcam.format = "i420".into();
    s.save(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("avatar = \"bundled:grace-hopper\""), "{text}");
    assert_eq!(Settings::load(&path).unwrap(), s);
}

#[test]
fn settings_files_from_older_versions_and_bad_values_are_repaired() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("settings.toml");
    // Only some fields, and values out of range.
    std::fs::write(
        &path,
        "overlay = true\noverlay_opacity = 7.0\n[crop]\nzoom = 100.0\npan_x = -3.0\n",
    )
    .unwrap();
    let s = Settings::load(&path).unwrap();
    assert!(s.overlay);
    assert_eq!(s.overlay_opacity, 1.0);
    assert_eq!(s.crop.zoom, marionette::pipeline::framing::MAX_ZOOM);
    assert_eq!(s.crop.pan_x, -1.0);
    assert_eq!(s.vcam, Settings::default().vcam);
    assert!(s.relative);
}

#[test]
fn a_corrupt_settings_file_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("settings.toml");
    std::fs::write(&path, "overlay = [this is not toml").unwrap();
    let err = Settings::load(&path).unwrap_err();
    assert!(matches!(err, SettingsError::Read { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("settings.toml") && msg.contains("delete the file"),
        "{msg}"
    );
}

#[test]
fn gallery_loads_bundled_then_user_portraits_and_skips_broken_files() {
    let user = tempfile::tempdir().unwrap();
    image::RgbImage::from_pixel(300, 200, image::Rgb([10, 200, 30]))
        .save(user.path().join("wide.png"))
        .unwrap();
    std::fs::write(user.path().join("broken.jpg"), b"not a jpeg").unwrap();
    let (g, errors) = Gallery::load(Some(&bundled()), Some(user.path()));
    let keys: Vec<&str> = g.portraits.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys[..2],
        ["bundled:eileen-collins", "bundled:grace-hopper"]
    );
    assert_eq!(g.len(), 3, "{keys:?}");
    assert!(g.portraits[..2].iter().all(|p| p.bundled));
    assert!(!g.portraits[2].bundled);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].to_string().contains("broken.jpg"),
        "{}",
        errors[0]
    );
    for p in &g.portraits {
        assert_eq!(p.image.width(), p.image.height(), "{} is square", p.name);
        assert!(p.image.width() <= marionette::app::gallery::PORTRAIT_SIDE);
    }
    // Ids are stable (the engine's cache key) and distinct.
    let (again, _) = Gallery::load(Some(&bundled()), Some(user.path()));
    assert_eq!(g.portraits[1].id, again.portraits[1].id);
    assert_ne!(g.portraits[0].id, g.portraits[1].id);
    assert_eq!(g.index_of("bundled:grace-hopper"), Some(1));
}

#[test]
fn adding_saves_the_chosen_square_and_removing_deletes_it() {
    let user = tempfile::tempdir().unwrap();
    let dir = user.path().join("avatars");
    let (mut g, _) = Gallery::load(Some(&bundled()), Some(&dir));
    let before = g.len();
    // A 200x100 image: left half red, right half blue. The square over the right half is blue.
    let img = image::RgbImage::from_fn(200, 100, |x, _| {
        if x < 100 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    });
    let i = g
        .add(
            &img,
            CropBox {
                x: 100.0,
                y: 0.0,
                side: 100.0,
            },
            "My Face!",
        )
        .unwrap();
    assert_eq!(i, before);
    let p = g.get(i).unwrap().clone();
    assert_eq!(p.path, dir.join("my-face.png"));
    let saved = image::open(&p.path).unwrap().to_rgb8();
    assert_eq!(saved.dimensions(), (100, 100));
    assert!(saved.pixels().all(|px| px.0 == [0, 0, 255]));
    // The same name again gets a number.
    let j = g.add(&img, CropBox::suggest(200, 100), "My Face!").unwrap();
    assert_eq!(g.get(j).unwrap().path, dir.join("my-face-2.png"));
    // A box outside the image is moved inside it.
    let k = g
        .add(
            &img,
            CropBox {
                x: 500.0,
                y: -40.0,
                side: 1000.0,
            },
            "clamped",
        )
        .unwrap();
    assert_eq!(image::open(&g.get(k).unwrap().path).unwrap().width(), 100);
    // A new gallery finds the added portraits.
    let (reloaded, errors) = Gallery::load(Some(&bundled()), Some(&dir));
    assert!(errors.is_empty());
    assert_eq!(reloaded.len(), before + 3);
    // Removing deletes the file.
    let removed = g.remove(i).unwrap();
    assert!(!removed.path.exists());
    assert_eq!(g.len(), before + 2);
    // Bundled portraits stay.
    assert!(matches!(g.remove(0), Err(GalleryError::Bundled { .. })));
    assert!(matches!(
        g.remove(99),
        Err(GalleryError::NoSuchPortrait(99))
    ));
}

#[test]
fn suggested_crop_is_the_largest_square_inside_the_image() {
    let c = CropBox::suggest(400, 600);
    assert_eq!((c.x, c.side), (0.0, 400.0));
    assert!(
        c.y > 0.0 && c.y < 100.0,
        "above centre for a tall portrait: {c:?}"
    );
    let c = CropBox::suggest(640, 480);
    assert_eq!((c.x, c.y, c.side), (80.0, 0.0, 480.0));
    let c = CropBox {
        x: -5.0,
        y: 590.0,
        side: 2.0,
    }
    .clamped(400, 600);
    assert_eq!((c.x, c.y, c.side), (0.0, 584.0, 16.0));
}
