//! Synthetic sequences: face boxes, known motions, warping, writing and scoring sequence folders, on
//! real photos.

use crate::common;

use marionette::media::MediaError;

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use marionette::synth::{
    FaceBox, KnownMotion, SPEC_FILE, SequenceSpec, SynthError, TARGET_MAE, evaluate, face_mae,
    frame_file_name, generate, generate_from, motion_slug, read_spec, square_photo,
    standard_motions, warp, write_sequence,
};

use common::fixtures_dir;

/// The bundled avatars (public-domain photos).
fn avatars_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/avatars")
}

fn collins() -> PathBuf {
    avatars_dir().join("eileen-collins.png")
}

fn hopper() -> PathBuf {
    avatars_dir().join("grace-hopper.jpg")
}

fn fixture_portrait() -> PathBuf {
    fixtures_dir().join("tiny-input-source.png")
}

/// Face boxes of the three photos after `square_photo` (centred square crop). The collins and hopper
/// boxes are the classic engine's test boxes carried from their hand crops ((96, 0, 320) and
/// (90, 50, 340) in the files) to the centred crops of the 512x512 and 512x600 files.
fn photo_face(path: &Path) -> FaceBox {
    let name = path.file_name().unwrap().to_string_lossy();
    let b = match &*name {
        "eileen-collins.png" => [0.3125, 0.05, 0.59375, 0.375],
        "grace-hopper.jpg" => [0.309, 0.111, 0.740, 0.543],
        _ => [0.30, 0.15, 0.75, 0.70],
    };
    FaceBox::new(b[0], b[1], b[2], b[3]).unwrap()
}

fn load_square(path: &Path, size: u32) -> RgbImage {
    square_photo(&image::open(path).unwrap().to_rgb8(), size)
}

fn read_png(path: &Path) -> RgbImage {
    image::open(path).unwrap().to_rgb8()
}

#[test]
fn face_box_parses_valid_boxes_and_rejects_bad_ones() {
    let b: FaceBox = "0.2,0.1,0.7,0.6".parse().unwrap();
    assert_eq!(b, FaceBox::new(0.2, 0.1, 0.7, 0.6).unwrap());
    assert_eq!(b.to_string().parse::<FaceBox>().unwrap(), b);
    let full: FaceBox = " 0 , 0 , 1 , 1 ".parse().unwrap();
    assert_eq!(full, FaceBox::full());

    for (bad, says) in [
        ("0.2,0.1,0.7", "expected four"),
        ("0.2,0.1,0.7,0.6,0.9", "expected four"),
        ("", "expected four"),
        ("a,0,1,1", "not a number"),
        ("0.2,0.1,,0.6", "not a number"),
        ("-0.1,0,1,1", "outside [0, 1]"),
        ("0,0,1.5,1", "outside [0, 1]"),
        ("NaN,0,1,1", "outside [0, 1]"),
        ("0.5,0,0.5,1", "x0 < x1"),
        ("0.7,0.1,0.2,0.6", "x0 < x1"),
        ("0.1,0.6,0.7,0.2", "y0 < y1"),
    ] {
        match bad.parse::<FaceBox>() {
            Err(e @ SynthError::BadFaceBox(_)) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(says),
                    "'{bad}': message '{msg}' lacks '{says}'"
                );
            }
            other => panic!("'{bad}' should be rejected, got {other:?}"),
        }
    }
    // A valid box too small for the frame is refused when used, not silently averaged over nothing.
    let tiny = FaceBox::new(0.50, 0.50, 0.51, 0.51).unwrap();
    let img = RgbImage::new(16, 16);
    assert!(matches!(
        face_mae(&img, &img, &tiny),
        Err(SynthError::BadFaceBox(_))
    ));
}

#[test]
fn motion_slugs_are_unique_folder_names() {
    let slugs: Vec<String> = standard_motions(256)
        .iter()
        .map(|(n, _)| motion_slug(n))
        .collect();
    assert_eq!(slugs[0], "rot-p15");
    assert_eq!(slugs[1], "rot-m15");
    assert_eq!(slugs[2], "scale-1_15");
    assert_eq!(slugs[4], "shift-20-m20");
    assert_eq!(slugs[8], "local-head");
    let mut unique = slugs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "{slugs:?}");
    for s in &slugs {
        assert!(
            s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'),
            "{s}"
        );
    }
}

#[test]
fn standard_motions_scale_pixel_amounts_with_size() {
    let at256 = standard_motions(256);
    let at128 = standard_motions(128);
    let names: Vec<&str> = at256.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "rot +15",
            "rot -15",
            "scale 1.15",
            "scale 0.85",
            "shift 20,-20",
            "combo",
            "combo2",
            "wobble",
            "local head",
            "local head2"
        ]
    );
    assert_eq!(at256[4].1.shift, [20.0, -20.0]);
    assert_eq!(at128[4].1.shift, [10.0, -10.0]);
    assert_eq!(at256[6].1.wobble, 3.0);
    assert_eq!(at128[6].1.wobble, 1.5);
    // Angles, scales and blob radii do not depend on the size.
    for ((_, a), (_, b)) in at256.iter().zip(&at128) {
        assert_eq!((a.degrees, a.scale, a.local), (b.degrees, b.scale, b.local));
    }
}

#[test]
fn identity_warp_gives_the_photo_back_exactly() {
    for path in [fixture_portrait(), collins(), hopper()] {
        let photo = load_square(&path, 96);
        let id = KnownMotion::identity();
        let out = warp(&photo, |x, y| id.backward(96, 96, x, y));
        assert!(
            out == photo,
            "{}: identity warp changed pixels",
            path.display()
        );
        // Every standard motion starts at the identity (frame 0 of a sequence).
        for (name, m) in standard_motions(96) {
            let m0 = m.lerp(0.0);
            let out = warp(&photo, |x, y| m0.backward(96, 96, x, y));
            assert!(out == photo, "{name}.lerp(0) is not the identity");
        }
    }
}

#[test]
fn integer_shift_moves_pixels_exactly() {
    let photo = load_square(&collins(), 64);
    let m = KnownMotion {
        shift: [3.0, -2.0],
        ..KnownMotion::identity()
    };
    let out = warp(&photo, |x, y| m.backward(64, 64, x, y));
    let mut compared = 0;
    for (x, y, p) in out.enumerate_pixels() {
        // Output (x, y) shows the photo at (x - 3, y + 2); black where that is outside.
        let (sx, sy) = (x as i64 - 3, y as i64 + 2);
        if (0..64).contains(&sx) && (0..64).contains(&sy) {
            assert_eq!(*p, *photo.get_pixel(sx as u32, sy as u32), "at ({x}, {y})");
            compared += 1;
        } else {
            assert_eq!(*p, Rgb([0, 0, 0]), "at ({x}, {y}) should be outside");
        }
    }
    assert_eq!(compared, 61 * 62);
    // A few spelled-out pixels, in case the loop above shares a mistake with the warp.
    assert_eq!(out.get_pixel(3, 0), photo.get_pixel(0, 2));
    assert_eq!(out.get_pixel(40, 30), photo.get_pixel(37, 32));
    assert_eq!(out.get_pixel(63, 61), photo.get_pixel(60, 63));
    assert_eq!(*out.get_pixel(63, 62), Rgb([0, 0, 0]));
}

#[test]
fn rotation_and_scaling_follow_the_stated_convention() {
    // A single white dot 6 px right of the centre of a 33x33 frame (centre at pixel 16).
    let n = 33;
    let mut img = RgbImage::new(n, n);
    img.put_pixel(22, 16, Rgb([255, 255, 255]));
    let brightest = |img: &RgbImage| {
        let (x, y, _) = img.enumerate_pixels().max_by_key(|(_, _, p)| p[0]).unwrap();
        (x, y, img.get_pixel(x, y)[0])
    };
    // +90 degrees turns clockwise on screen (y down): right of centre goes below it.
    let rot = KnownMotion {
        degrees: 90.0,
        ..KnownMotion::identity()
    };
    let out = warp(&img, |x, y| rot.backward(n, n, x, y));
    assert_eq!(brightest(&out), (16, 22, 255));
    // Scaling by 2 about the centre doubles the offset; shift is applied after.
    let zoom = KnownMotion {
        scale: 2.0,
        shift: [-1.0, 3.0],
        ..KnownMotion::identity()
    };
    let out = warp(&img, |x, y| zoom.backward(n, n, x, y));
    assert_eq!(brightest(&out), (16 + 12 - 1, 16 + 3, 255));
    // A local motion leaves the far corners alone.
    let mut corner = RgbImage::new(n, n);
    corner.put_pixel(0, 0, Rgb([200, 100, 50]));
    let local = KnownMotion {
        degrees: 15.0,
        local: 0.1,
        ..KnownMotion::identity()
    };
    let out = warp(&corner, |x, y| local.backward(n, n, x, y));
    assert_eq!(*out.get_pixel(0, 0), Rgb([200, 100, 50]));
}

#[test]
fn face_mae_measures_only_the_box_in_units_of_one() {
    let black = RgbImage::new(20, 10);
    let mut b = RgbImage::new(20, 10);
    // Left half white, right half black; the box covers columns 5..15, rows 2..8.
    for (x, _, p) in b.enumerate_pixels_mut() {
        if x < 10 {
            *p = Rgb([255, 255, 255]);
        }
    }
    let face = FaceBox::new(0.25, 0.2, 0.75, 0.8).unwrap();
    let mae = face_mae(&black, &b, &face).unwrap();
    assert!((mae - 0.5).abs() < 1e-12, "{mae}");
    assert_eq!(face_mae(&b, &b, &face).unwrap(), 0.0);
    // One channel off by 51 everywhere: 51 / 255 / 3.
    let mut g = black.clone();
    for p in g.pixels_mut() {
        p[1] = 51;
    }
    let mae = face_mae(&black, &g, &FaceBox::full()).unwrap();
    assert!((mae - 0.2 / 3.0).abs() < 1e-12, "{mae}");
    assert!(matches!(
        face_mae(&black, &RgbImage::new(10, 20), &face),
        Err(SynthError::Mismatch(_))
    ));
}

#[test]
fn generate_writes_ten_sequences_that_score_zero_against_themselves() {
    let tmp = tempfile::tempdir().unwrap();
    let size = 64;
    let frames = 3;
    let face = photo_face(&collins());
    let dirs = generate(&collins(), tmp.path(), size, face, frames).unwrap();
    assert_eq!(dirs.len(), 10);
    let photo = load_square(&collins(), size);
    for (dir, (motion_name, motion)) in dirs.iter().zip(standard_motions(size)) {
        let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            folder,
            format!("eileen-collins-{}", motion_slug(motion_name))
        );
        let pngs: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".png"))
            .collect();
        assert_eq!(pngs.len(), frames + 1, "{folder}: {pngs:?}");
        let spec = read_spec(dir).unwrap().expect("sequence.json");
        assert_eq!(
            spec,
            SequenceSpec {
                name: folder.clone(),
                size,
                frames,
                face,
                motion,
                photo: "eileen-collins.png".to_owned(),
            }
        );
        // Frame 0 is the photo, the last frame the full motion.
        assert!(read_png(&dir.join(frame_file_name(0))) == photo, "{folder}");
        let full = warp(&photo, |x, y| motion.backward(size, size, x, y));
        assert!(
            read_png(&dir.join(frame_file_name(frames))) == full,
            "{folder}"
        );
        let score = evaluate(dir, dir, None).unwrap();
        assert_eq!(score.name, folder);
        assert_eq!(score.frames, frames);
        assert_eq!(
            (score.mean_mae, score.max_mae, score.last_mae),
            (0.0, 0.0, 0.0)
        );
        assert!(score.passes());
        assert!(score.unmoved_mae > 0.0, "{score}");
    }
    // Regenerating over an existing output is allowed (files are overwritten).
    generate(&collins(), tmp.path(), size, face, frames).unwrap();
}

#[test]
fn doing_nothing_scores_the_unmoved_error_which_is_well_above_the_target_for_rotations() {
    let size = 128;
    let frames = 4;
    for path in [fixture_portrait(), collins(), hopper()] {
        let tmp = tempfile::tempdir().unwrap();
        let face = photo_face(&path);
        let photo = load_square(&path, size);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let dirs = generate_from(&photo, &name, &tmp.path().join("seq"), face, frames).unwrap();
        // "Animation" that ignores the driving frames: frame 0 copied for every frame.
        let still = tmp.path().join("still");
        std::fs::create_dir(&still).unwrap();
        for i in 0..=frames {
            photo.save(still.join(frame_file_name(i))).unwrap();
        }
        for dir in &dirs {
            let s = evaluate(dir, &still, None).unwrap();
            println!("{s}");
            assert_eq!(s.mean_mae, s.unmoved_mae, "{s}");
            assert!(s.max_mae >= s.mean_mae && s.max_mae >= s.last_mae, "{s}");
            if s.name.contains("-rot-") {
                assert!(s.unmoved_mae > TARGET_MAE, "{s}");
                assert!(!s.passes(), "{s}");
                // The error grows with the motion: the last frame is the worst.
                assert_eq!(s.max_mae, s.last_mae, "{s}");
            }
        }
    }
}

#[test]
fn evaluate_reports_mismatched_folders_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let size = 48;
    let face = photo_face(&hopper());
    let dirs = generate(&hopper(), &tmp.path().join("seq"), size, face, 3).unwrap();
    let seq = &dirs[0];

    // A produced folder with one frame missing.
    let short = tmp.path().join("short");
    std::fs::create_dir(&short).unwrap();
    for i in 0..3 {
        std::fs::copy(seq.join(frame_file_name(i)), short.join(frame_file_name(i))).unwrap();
    }
    let msg = match evaluate(seq, &short, None) {
        Err(e @ SynthError::Mismatch(_)) => e.to_string(),
        other => panic!("expected a count mismatch, got {other:?}"),
    };
    assert!(
        msg.contains("4 pictures") && msg.contains("holds 3"),
        "{msg}"
    );

    // An empty produced folder.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        evaluate(seq, &empty, None),
        Err(SynthError::Media(MediaError::NoImages { .. }))
    ));
    // A missing one.
    assert!(matches!(
        evaluate(seq, &tmp.path().join("nowhere"), None),
        Err(SynthError::Media(MediaError::Io { .. }))
    ));

    // Produced frames of another size.
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    for i in 0..4 {
        let f = read_png(&seq.join(frame_file_name(i)));
        image::imageops::thumbnail(&f, 32, 32)
            .save(small.join(frame_file_name(i)))
            .unwrap();
    }
    let msg = match evaluate(seq, &small, None) {
        Err(e @ SynthError::Mismatch(_)) => e.to_string(),
        other => panic!("expected a size mismatch, got {other:?}"),
    };
    assert!(msg.contains("32x32") && msg.contains("48x48"), "{msg}");

    // A corrupt produced frame is an error naming the file, not a panic.
    let corrupt = tmp.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    for i in 0..4 {
        std::fs::copy(
            seq.join(frame_file_name(i)),
            corrupt.join(frame_file_name(i)),
        )
        .unwrap();
    }
    let bad = corrupt.join(frame_file_name(2));
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes.truncate(bytes.len() / 2);
    bytes[20..40].fill(0xAB);
    std::fs::write(&bad, bytes).unwrap();
    match evaluate(seq, &corrupt, None) {
        Err(SynthError::Media(MediaError::Image { path, .. })) => assert_eq!(path, bad),
        other => panic!("expected an image error, got {other:?}"),
    }
    // Same for a photo that is not a picture at all.
    let fake = tmp.path().join("fake.png");
    std::fs::write(&fake, b"not a png").unwrap();
    assert!(matches!(
        generate(&fake, &tmp.path().join("x"), 32, face, 2),
        Err(SynthError::Media(MediaError::Image { .. }))
    ));

    // Without sequence.json the face box must be given.
    std::fs::remove_file(seq.join(SPEC_FILE)).unwrap();
    let msg = match evaluate(seq, seq, None) {
        Err(e @ SynthError::BadFaceBox(_)) => e.to_string(),
        other => panic!("expected a request for --face, got {other:?}"),
    };
    assert!(msg.contains("--face"), "{msg}");
    let s = evaluate(seq, seq, Some(FaceBox::full())).unwrap();
    assert_eq!((s.frames, s.max_mae), (3, 0.0));
    assert_eq!(s.name, seq.file_name().unwrap().to_string_lossy());

    // A broken sequence.json is reported as such.
    std::fs::write(seq.join(SPEC_FILE), "{\"name\": 3}").unwrap();
    assert!(matches!(read_spec(seq), Err(SynthError::Json { .. })));
    assert!(matches!(
        evaluate(seq, seq, None),
        Err(SynthError::Json { .. })
    ));
}

#[test]
fn write_sequence_checks_its_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let photo = load_square(&fixture_portrait(), 32);
    let spec = SequenceSpec {
        name: "t".to_owned(),
        size: 32,
        frames: 2,
        face: FaceBox::full(),
        motion: standard_motions(32)[5].1,
        photo: "p.png".to_owned(),
    };
    write_sequence(&photo, &spec, &tmp.path().join("ok")).unwrap();
    assert_eq!(
        read_spec(&tmp.path().join("ok")).unwrap(),
        Some(spec.clone())
    );
    assert_eq!(read_spec(tmp.path()).unwrap(), None);

    let wrong_size = SequenceSpec {
        size: 64,
        ..spec.clone()
    };
    assert!(matches!(
        write_sequence(&photo, &wrong_size, &tmp.path().join("a")),
        Err(SynthError::Mismatch(_))
    ));
    let no_frames = SequenceSpec {
        frames: 0,
        ..spec.clone()
    };
    assert!(matches!(
        write_sequence(&photo, &no_frames, &tmp.path().join("b")),
        Err(SynthError::InvalidArgument(_))
    ));
    let bad_motion = SequenceSpec {
        motion: KnownMotion {
            scale: 0.0,
            ..KnownMotion::identity()
        },
        ..spec.clone()
    };
    assert!(matches!(
        write_sequence(&photo, &bad_motion, &tmp.path().join("c")),
        Err(SynthError::InvalidArgument(_))
    ));
    // Nothing was written for the refused sequences.
    for d in ["a", "b", "c"] {
        assert!(!tmp.path().join(d).exists(), "{d}");
    }
}

#[test]
fn square_photo_crops_the_centre() {
    // 6x4 picture whose columns are numbered: the centred 4x4 square holds columns 1..5.
    let img = RgbImage::from_fn(6, 4, |x, y| Rgb([x as u8 * 10, y as u8 * 10, 7]));
    let sq = square_photo(&img, 4);
    assert_eq!(sq.dimensions(), (4, 4));
    assert_eq!(*sq.get_pixel(0, 0), Rgb([10, 0, 7]));
    assert_eq!(*sq.get_pixel(3, 3), Rgb([40, 30, 7]));
    assert_eq!(square_photo(&img, 2).dimensions(), (2, 2));
    assert_eq!(square_photo(&RgbImage::new(0, 5), 3), RgbImage::new(3, 3));
}
