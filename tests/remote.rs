//! Rendering on another machine, over loopback: `remote::server` with the tiny FOMM fixture, and
//! clients speaking the protocol through the encrypted channel. A remote frame equals the local
//! one bit for bit (raw frames); clients share the server fairly; a full server refuses clearly
//! and a departed client frees its place; hostile peers (a wrong secret, garbage, a motion out
//! of order, a flood of silent connections) are refused while the others keep their frames.

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use fomm::load::checkpoint::Checkpoint;
use fomm::load::config::FommConfig;
use fomm::model::Fomm;
use fomm::motion_transfer::TransferOptions;
use marionette::engine::Animator;
use marionette::engine::fomm::FommAnimator;
use marionette::engine::smoothing::Smoothing;
use marionette::media::resize::{rgb8_to_tensor, tensor_to_rgb8};
use marionette::media::video::FfmpegTools;
use marionette::motion::{FrameMotion, KeypointSet, ReferenceMotion};
use marionette::remote::channel::{Channel, ChannelError, Secret};
use marionette::remote::server::{EngineFactory, Server, ServerOptions};
use marionette::remote::wire::{Codec, CodecSet, Message, VERSIONS};

use crate::common::fixture;

fn model() -> Fomm {
    let config = FommConfig::from_yaml_file(&fixture("tiny.yaml")).expect("config");
    let ckpt = Checkpoint::load(&fixture("tiny-zip.pth.tar")).expect("checkpoint");
    Fomm::from_checkpoint(&config, &ckpt, "tiny", &Device::Cpu, Default::default()).expect("model")
}

fn factory(model: &Fomm) -> EngineFactory {
    let model = model.clone();
    Arc::new(move || {
        Ok(
            Box::new(FommAnimator::new(model.clone(), TransferOptions::default()))
                as Box<dyn Animator + Send>,
        )
    })
}

fn serve(model: &Fomm, max_clients: usize, secret: &Secret) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    Server::start(
        listener,
        ServerOptions {
            max_clients,
            secret: secret.clone(),
            engines: factory(model),
            h264: Some(FfmpegTools::from_env()),
        },
    )
    .expect("the server starts")
}

/// A picture as the model's input tensor, at `side`.
fn picture(name: &str, side: u32) -> (Vec<u8>, Tensor) {
    let img = image::open(fixture(name)).expect("fixture").to_rgb8();
    let img = image::imageops::resize(&img, side, side, image::imageops::FilterType::Triangle);
    let t = rgb8_to_tensor(img.as_raw(), side as usize, side as usize).expect("tensor");
    (img.into_raw(), t)
}

fn keypoints(model: &Fomm, t: &Tensor) -> KeypointSet {
    KeypointSet::from_keypoints(&model.detect(t).expect("detect")).expect("keypoints")
}

/// Connects and says hello; the server's answer.
fn hello(addr: std::net::SocketAddr, secret: &Secret) -> (Channel<TcpStream>, Message) {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut ch = Channel::connect(stream, secret).expect("handshake");
    ch.send(&Message::Hello {
        versions: VERSIONS,
        codecs: CodecSet::of(&[Codec::Raw]),
    })
    .unwrap();
    let answer = ch.recv().expect("an answer to hello");
    (ch, answer)
}

/// A client that has sent its portrait and reference.
fn ready_client(
    addr: std::net::SocketAddr,
    secret: &Secret,
    portrait: &[u8],
    reference: &KeypointSet,
) -> Channel<TcpStream> {
    let (mut ch, answer) = hello(addr, secret);
    let Message::Welcome { side, .. } = answer else {
        panic!("not welcomed: {answer:?}");
    };
    assert_eq!(side, 256);
    ch.send(&Message::Portrait {
        id: 1,
        side,
        rgb: portrait.to_vec(),
    })
    .unwrap();
    ch.send(&Message::Reference {
        keypoints: reference.clone(),
    })
    .unwrap();
    ch
}

#[test]
fn a_remote_frame_equals_the_local_one() {
    let model = model();
    let secret = Secret::generate().unwrap();
    let server = serve(&model, 4, &secret);
    let (portrait, portrait_t) = picture("tiny2-input-source.png", 256);
    let (_, d0) = picture("tiny-input-driving0.png", 256);
    let (_, d1) = picture("tiny-input-driving1.png", 256);
    let (k0, k1) = (keypoints(&model, &d0), keypoints(&model, &d1));
    let mut ch = ready_client(server.addr(), &secret, &portrait, &k0);
    ch.send(&Message::Motion {
        seq: 1,
        keypoints: k1.clone(),
    })
    .unwrap();
    let Message::Frame { seq, data, .. } = ch.recv().expect("a frame") else {
        panic!("not a frame");
    };
    assert_eq!(seq, 1);
    // The same motion rendered here.
    let mut local = FommAnimator::new(model.clone(), TransferOptions::default());
    local.set_smoothing(Smoothing::OFF);
    local.select_portrait(1, &portrait_t).unwrap();
    local
        .set_reference_motion(&ReferenceMotion::Fomm(k0))
        .unwrap();
    let want = tensor_to_rgb8(&local.animate_motion(&FrameMotion::Fomm(k1)).unwrap()).unwrap();
    assert_eq!(data.len(), want.as_raw().len());
    assert!(
        data == *want.as_raw(),
        "the remote frame differs from the local one"
    );
    drop(ch);
    server.stop();
}

/// Streams motions as fast as the server takes them and counts the frames that come back, until
/// `stop`.
fn streaming_client(
    addr: std::net::SocketAddr,
    secret: Secret,
    portrait: Vec<u8>,
    reference: KeypointSet,
    motion: KeypointSet,
    frames: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let ch = ready_client(addr, &secret, &portrait, &reference);
        let (mut rx, mut tx) = ch.split().unwrap();
        let sender = thread::spawn(move || {
            let mut seq = 0;
            while !stop.load(Ordering::SeqCst) {
                seq += 1;
                let m = Message::Motion {
                    seq,
                    keypoints: motion.clone(),
                };
                if tx.send(&m).is_err() {
                    return;
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        while let Ok(Message::Frame { .. }) = rx.recv() {
            frames.fetch_add(1, Ordering::SeqCst);
        }
        let _ = sender.join();
    })
}

#[test]
fn four_clients_share_the_server_fairly() {
    let model = model();
    let secret = Secret::generate().unwrap();
    let server = serve(&model, 4, &secret);
    let (portrait, _) = picture("tiny2-input-source.png", 256);
    let (_, d0) = picture("tiny-input-driving0.png", 256);
    let (_, d1) = picture("tiny-input-driving1.png", 256);
    let (k0, k1) = (keypoints(&model, &d0), keypoints(&model, &d1));
    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicU64>> = (0..4).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let clients: Vec<_> = counts
        .iter()
        .map(|c| {
            streaming_client(
                server.addr(),
                secret.clone(),
                portrait.clone(),
                k0.clone(),
                k1.clone(),
                c.clone(),
                stop.clone(),
            )
        })
        .collect();
    // Until every client has frames, then a measured stretch.
    let t = Instant::now();
    while counts.iter().any(|c| c.load(Ordering::SeqCst) == 0) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "a client got no frame"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // From here until the client with the fewest has 10 more: the counts are taken at once.
    let before: Vec<u64> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    let since = || -> Vec<u64> {
        counts
            .iter()
            .zip(&before)
            .map(|(c, b)| c.load(Ordering::SeqCst) - b)
            .collect()
    };
    let t = Instant::now();
    let got = loop {
        let got = since();
        if got.iter().all(|&n| n >= 10) {
            break got;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "not every client got 10 frames in 2 minutes: {got:?}"
        );
        thread::sleep(Duration::from_millis(10));
    };
    stop.store(true, Ordering::SeqCst);
    server.stop();
    for c in clients {
        c.join().unwrap();
    }
    let (min, max) = (
        *got.iter().min().unwrap() as f64,
        *got.iter().max().unwrap() as f64,
    );
    eprintln!(
        "frames per client while the fewest got 10 ({:.1} s): {got:?}",
        t.elapsed().as_secs_f64()
    );
    assert!(
        max <= min * 1.2,
        "the shares differ by more than 20 %: {got:?}"
    );
}

#[test]
fn a_full_server_says_so_and_a_departed_client_frees_its_place() {
    let model = model();
    let secret = Secret::generate().unwrap();
    let server = serve(&model, 2, &secret);
    let (a, answer) = hello(server.addr(), &secret);
    assert!(matches!(answer, Message::Welcome { .. }), "{answer:?}");
    let (_b, answer) = hello(server.addr(), &secret);
    assert!(matches!(answer, Message::Welcome { .. }), "{answer:?}");
    let (_, answer) = hello(server.addr(), &secret);
    match answer {
        Message::Refused { reason } => assert!(reason.contains("2 clients"), "{reason}"),
        other => panic!("a third client was not refused: {other:?}"),
    }
    // The first goes: a new client gets its place (once the server has seen it go).
    drop(a);
    let t = Instant::now();
    loop {
        let (_c, answer) = hello(server.addr(), &secret);
        if matches!(answer, Message::Welcome { .. }) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the departed client's place was not freed: {answer:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    server.stop();
}

#[test]
fn hostile_peers_are_refused_and_the_others_keep_their_frames() {
    let model = model();
    let secret = Secret::generate().unwrap();
    let server = serve(&model, 4, &secret);
    let addr = server.addr();
    let (portrait, _) = picture("tiny2-input-source.png", 256);
    let (_, d0) = picture("tiny-input-driving0.png", 256);
    let (_, d1) = picture("tiny-input-driving1.png", 256);
    let (k0, k1) = (keypoints(&model, &d0), keypoints(&model, &d1));
    let stop = Arc::new(AtomicBool::new(false));
    let frames = Arc::new(AtomicU64::new(0));
    let good = streaming_client(
        addr,
        secret.clone(),
        portrait.clone(),
        k0.clone(),
        k1.clone(),
        frames.clone(),
        stop.clone(),
    );
    let t = Instant::now();
    while frames.load(Ordering::SeqCst) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no frame before the attack"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let before = frames.load(Ordering::SeqCst);

    // A wrong secret: the handshake fails on both sides.
    let stream = TcpStream::connect(addr).unwrap();
    let wrong = Channel::connect(stream, &Secret::generate().unwrap());
    assert!(matches!(wrong, Err(ChannelError::WrongSecret)), "{wrong:?}");
    // Garbage: closed without an answer.
    let mut junk = TcpStream::connect(addr).unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    use std::io::{Read, Write};
    let _ = junk.write_all(b"\x00\x20GET / HTTP/1.1\r\nHost: example\r\n\r\n");
    let mut buf = [0u8; 64];
    assert!(matches!(junk.read(&mut buf), Ok(0) | Err(_)));
    // A client with the secret whose motions go backwards: disconnected.
    let mut backwards = ready_client(addr, &secret, &portrait, &k0);
    for seq in [5, 4] {
        let _ = backwards.send(&Message::Motion {
            seq,
            keypoints: k1.clone(),
        });
    }
    let t = Instant::now();
    loop {
        match backwards.recv() {
            Ok(Message::Frame { .. }) => {}
            Ok(other) => panic!("{other:?}"),
            Err(_) => break,
        }
        assert!(t.elapsed() < Duration::from_secs(20), "not disconnected");
    }
    // A flood of connections that never say anything.
    let flood: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    thread::sleep(Duration::from_secs(1));
    let during = frames.load(Ordering::SeqCst) - before;
    drop(flood);
    // Once the flood's handshakes have timed out, a new client is served.
    thread::sleep(Duration::from_secs(6));
    let (_late, answer) = hello(addr, &secret);
    assert!(matches!(answer, Message::Welcome { .. }), "{answer:?}");
    stop.store(true, Ordering::SeqCst);
    server.stop();
    good.join().unwrap();
    eprintln!("the good client's frames while attacked: {during}");
    assert!(
        during >= 5,
        "the good client got {during} frames during the attack"
    );
}

#[test]
fn serve_prints_how_to_connect_serves_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    let mut child = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .args(["serve", "--listen", "127.0.0.1:0", "--cpu", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny-zip.pth.tar"))
        .arg("--secret-file")
        .arg(&secret_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("marionette serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut secret) = (None, None);
    let mut line = String::new();
    while addr.is_none() || secret.is_none() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "serve ended early");
        if let Some(rest) = line.strip_prefix("listening on ") {
            addr = rest.split_whitespace().next().map(|a| a.parse().unwrap());
        }
        if line.starts_with("pairing secret") {
            let text = line.rsplit(": ").next().unwrap();
            secret = Some(Secret::parse(text).expect("the printed secret parses"));
        }
    }
    let (addr, secret): (std::net::SocketAddr, Secret) = (addr.unwrap(), secret.unwrap());
    // The file holds the same secret, readable by its owner only.
    let kept = std::fs::read_to_string(&secret_file).unwrap();
    assert_eq!(Secret::parse(&kept).unwrap(), secret);
    let model = model();
    let (portrait, _) = picture("tiny2-input-source.png", 256);
    let (_, d0) = picture("tiny-input-driving0.png", 256);
    let k0 = keypoints(&model, &d0);
    let mut ch = ready_client(addr, &secret, &portrait, &k0);
    ch.send(&Message::Motion {
        seq: 1,
        keypoints: k0,
    })
    .unwrap();
    assert!(matches!(
        ch.recv().expect("a frame"),
        Message::Frame { seq: 1, .. }
    ));
    drop(ch);
    // Ctrl-C: a clean stop that says what it served.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "serve did not stop on Ctrl-C"
        );
        thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    use std::io::Read;
    out.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "exit {status}: {rest}");
    assert!(
        rest.contains("stopped: 1 clients served, 1 frames rendered"),
        "{rest}"
    );
}

#[test]
fn the_client_says_what_went_wrong_and_sees_its_server_go() {
    use marionette::remote::client::{RemoteClient, RemoteError};
    let model = model();
    let secret = Secret::generate().unwrap();
    // Nothing listening.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = RemoteClient::connect(&free.to_string(), &secret, None).err();
    assert!(
        matches!(err, Some(RemoteError::Unreachable { .. })),
        "{err:?}"
    );
    let err = RemoteClient::connect("no-such-host.invalid:1", &secret, None).err();
    assert!(
        matches!(err, Some(RemoteError::Unreachable { .. })),
        "{err:?}"
    );
    let server = serve(&model, 1, &secret);
    let addr = server.addr().to_string();
    // The wrong secret.
    let err = RemoteClient::connect(&addr, &Secret::generate().unwrap(), None).err();
    assert!(
        err.as_ref()
            .is_some_and(|e| e.to_string().contains("pairing secret")),
        "{err:?}"
    );
    // Served, with bytes counted: a FOMM motion is 242 bytes and its message 247.
    let mut client = RemoteClient::connect(&addr, &secret, None).expect("connects");
    assert_eq!(client.model().side, 256);
    let err = RemoteClient::connect(&addr, &secret, None).err();
    assert!(
        matches!(&err, Some(RemoteError::Refused(r)) if r.contains("1 clients")),
        "{err:?}"
    );
    let (portrait, _) = picture("tiny2-input-source.png", 256);
    let (_, d0) = picture("tiny-input-driving0.png", 256);
    let (_, d1) = picture("tiny-input-driving1.png", 256);
    let (k0, k1) = (keypoints(&model, &d0), keypoints(&model, &d1));
    client.send_portrait(1, portrait).unwrap();
    client.send_reference(k0).unwrap();
    let up_before = client.traffic().up.load(Ordering::SeqCst);
    client.send_motion(1, k1).unwrap();
    assert_eq!(client.traffic().up.load(Ordering::SeqCst) - up_before, 247);
    let frame = client
        .next_frame(Duration::from_secs(30))
        .unwrap()
        .expect("a frame in 30 s");
    assert_eq!((frame.seq, frame.rgb.len()), (1, 256 * 256 * 3));
    // The server stops: the client hears of it.
    server.stop();
    let t = Instant::now();
    let why = loop {
        match client.next_frame(Duration::from_millis(100)) {
            Ok(_) => assert!(t.elapsed() < Duration::from_secs(10), "never lost"),
            Err(e) => break e,
        }
    };
    assert!(matches!(why, RemoteError::Lost(_)), "{why:?}");
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse.max(1e-12)).log10()
}

/// `a` moved `t` of the way to `b`.
fn between(a: &KeypointSet, b: &KeypointSet, t: f32) -> KeypointSet {
    let mix = |x: f32, y: f32| x + (y - x) * t;
    KeypointSet {
        points: a
            .points
            .iter()
            .zip(&b.points)
            .map(|(p, q)| [mix(p[0], q[0]), mix(p[1], q[1])])
            .collect(),
        jacobians: a
            .jacobians
            .as_ref()
            .zip(b.jacobians.as_ref())
            .map(|(ja, jb)| {
                ja.iter()
                    .zip(jb)
                    .map(|(m, n)| {
                        [
                            [mix(m[0][0], n[0][0]), mix(m[0][1], n[0][1])],
                            [mix(m[1][0], n[1][0]), mix(m[1][1], n[1][1])],
                        ]
                    })
                    .collect()
            }),
    }
}

/// JPEG at quality 95 (what Avatarify's remote mode sends): its bytes and the picture back.
fn jpeg95(rgb: &[u8], side: u32) -> (usize, Vec<u8>) {
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 95)
        .encode(rgb, side, side, image::ExtendedColorType::Rgb8)
        .unwrap();
    let back = image::load_from_memory(&buf).unwrap().to_rgb8().into_raw();
    (buf.len(), back)
}

#[test]
fn h264_frames_carry_each_motion_compressed() {
    use marionette::remote::client::RemoteClient;
    let model = model();
    let secret = Secret::generate().unwrap();
    let server = serve(&model, 1, &secret);
    let tools = FfmpegTools::from_env();
    let mut client =
        RemoteClient::connect(&server.addr().to_string(), &secret, Some(&tools)).expect("connects");
    assert_eq!(client.model().codec, Codec::H264);
    let (portrait, portrait_t) = picture("tiny2-input-source.png", 256);
    let (_, d0) = picture("tiny-input-driving0.png", 256);
    let (_, d1) = picture("tiny-input-driving1.png", 256);
    let (k0, k1) = (keypoints(&model, &d0), keypoints(&model, &d1));
    client.send_portrait(1, portrait).unwrap();
    client.send_reference(k0.clone()).unwrap();
    let mut local = FommAnimator::new(model.clone(), TransferOptions::default());
    local.set_smoothing(Smoothing::OFF);
    local.select_portrait(1, &portrait_t).unwrap();
    local
        .set_reference_motion(&ReferenceMotion::Fomm(k0.clone()))
        .unwrap();
    let steps = 12u32;
    let (mut bytes, mut worst) = (0, f64::MAX);
    let mut previous: Option<Vec<u8>> = None;
    for seq in 1..=steps {
        let kp = between(&k0, &k1, seq as f32 / steps as f32);
        let down = client.traffic().down.load(Ordering::SeqCst);
        client.send_motion(seq, kp.clone()).unwrap();
        let frame = client
            .next_frame(Duration::from_secs(30))
            .unwrap()
            .expect("a frame in 30 s");
        assert_eq!(frame.seq, seq);
        let want = tensor_to_rgb8(&local.animate_motion(&FrameMotion::Fomm(kp)).unwrap())
            .unwrap()
            .into_raw();
        let own = psnr(&frame.rgb, &want);
        // This motion's frame, not the one before it.
        if let Some(p) = &previous {
            let before = psnr(&frame.rgb, p);
            assert!(
                own > before,
                "frame {seq}: {own:.1} dB, the previous motion's {before:.1}"
            );
        }
        bytes += client.traffic().down.load(Ordering::SeqCst) - down;
        worst = worst.min(own);
        previous = Some(want);
    }
    // The tiny fixture's random weights render speckled frames, the hardest kind to compress
    // (a real portrait's figures are the next test's); still well under the raw 196,608 bytes.
    let per = bytes / u64::from(steps);
    eprintln!("tiny fixture over H.264: {per} bytes a frame, worst {worst:.1} dB");
    assert!(worst > 25.0, "worst frame {worst:.1} dB");
    assert!(per < 196_608 / 2, "{per} bytes a frame");
    drop(client);
    server.stop();
}

#[test]
fn on_rendered_portraits_h264_matches_jpeg_q95_for_under_a_third_of_its_bytes() {
    use marionette::engine::classic::{ClassicEngine, ClassicParams};
    use marionette::remote::codec::{H264Decoder, H264Encoder};
    let tools = FfmpegTools::from_env();
    let side = 256u32;
    let (mut h264, mut jpeg, mut h264_db, mut jpeg_db, mut n) = (0, 0, 0.0, 0.0, 0);
    for name in ["eileen-collins.png", "grace-hopper.jpg"] {
        let path = format!("{}/assets/avatars/{name}", env!("CARGO_MANIFEST_DIR"));
        let img = image::open(&path).expect("a bundled portrait").to_rgb8();
        let img = marionette::media::resize::center_square_crop(&img);
        let img = image::imageops::resize(&img, side, side, image::imageops::FilterType::Triangle);
        let t = rgb8_to_tensor(img.as_raw(), side as usize, side as usize).unwrap();
        let mut engine = ClassicEngine::new(ClassicParams::default(), (256, 256)).unwrap();
        engine.select_portrait(1, &t).unwrap();
        let mut enc = H264Encoder::start(&tools, side as usize).unwrap();
        let mut dec = H264Decoder::start(&tools, side as usize).unwrap();
        // The idle motion at 10 frames a second: a server rendering keyframes at a third of a
        // 30 fps camera.
        for i in 0..30 {
            let f = tensor_to_rgb8(&engine.animate_idle(f64::from(i) / 10.0).unwrap())
                .unwrap()
                .into_raw();
            let coded = enc.encode(&f).unwrap();
            let back = dec.decode(&coded).unwrap();
            let (jb, jback) = jpeg95(&f, side);
            // The first frame starts the stream (headers, an intra frame).
            if i > 0 {
                h264 += coded.len();
                jpeg += jb;
                h264_db += psnr(&back, &f);
                jpeg_db += psnr(&jback, &f);
                n += 1;
            }
        }
    }
    let (h264_db, jpeg_db) = (h264_db / f64::from(n), jpeg_db / f64::from(n));
    eprintln!(
        "H.264 4:4:4: {} bytes a frame at {h264_db:.1} dB; JPEG q95: {} at {jpeg_db:.1} dB",
        h264 / n as usize,
        jpeg / n as usize
    );
    assert!(
        h264_db > jpeg_db - 0.5,
        "H.264 {h264_db:.1} dB, JPEG {jpeg_db:.1}"
    );
    assert!(h264 * 3 <= jpeg, "H.264 {h264} bytes, JPEG q95 {jpeg}");
}

/// `marionette serve` on `listen` with the tiny fixture and the secret kept in `secret_file`;
/// the address it listens on and the secret it printed.
pub(super) fn start_serve(
    listen: &str,
    secret_file: &std::path::Path,
) -> (std::process::Child, std::net::SocketAddr, Secret) {
    start_serve_with(
        std::process::Command::new(env!("CARGO_BIN_EXE_marionette")),
        listen,
        secret_file,
    )
}

/// [`start_serve`] through `cmd` (the app, perhaps in a network namespace).
fn start_serve_with(
    mut cmd: std::process::Command,
    listen: &str,
    secret_file: &std::path::Path,
) -> (std::process::Child, std::net::SocketAddr, Secret) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = cmd
        .args(["serve", "--listen", listen, "--cpu", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny-zip.pth.tar"))
        .arg("--secret-file")
        .arg(secret_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("marionette serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut addr, mut secret) = (None, None);
    let mut line = String::new();
    while addr.is_none() || secret.is_none() {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "serve ended early");
        if let Some(rest) = line.strip_prefix("listening on ") {
            addr = rest.split_whitespace().next().map(|a| a.parse().unwrap());
        }
        if line.starts_with("pairing secret") {
            secret = Some(Secret::parse(line.rsplit(": ").next().unwrap()).unwrap());
        }
    }
    // Keep reading, so that its prints never block it.
    thread::spawn(move || {
        let mut sink = String::new();
        while out.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    (child, addr.unwrap(), secret.unwrap())
}

/// How many times the run's log said `what` (its stats lines repeat the newest notice: they
/// are not counted).
fn said(log: &str, what: &str) -> usize {
    log.lines()
        .filter(|l| !l.starts_with('{') && l.contains(what))
        .count()
}

/// The stderr of a `run --stats`, kept line by line as it comes.
struct RunWatch {
    /// The run's messages, each with when it came.
    lines: Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
}

impl RunWatch {
    fn new(run: &mut std::process::Child) -> Self {
        use std::io::{BufRead, BufReader};
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let err = BufReader::new(run.stderr.take().expect("run's stderr is piped"));
        let kept = lines.clone();
        thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                kept.lock().unwrap().push((Instant::now(), l));
            }
        });
        Self { lines }
    }

    fn text(&self) -> String {
        let l = self.lines.lock().unwrap();
        l.iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn last_stats(&self) -> serde_json::Value {
        self.last_stats_at().1
    }

    /// The newest stats and when they came (the run prints them every few seconds).
    fn last_stats_at(&self) -> (Instant, serde_json::Value) {
        let l = self.lines.lock().unwrap();
        l.iter()
            .rev()
            .filter(|(_, l)| l.starts_with('{'))
            .find_map(|(t, l)| Some((*t, serde_json::from_str(l).ok()?)))
            .unwrap_or((Instant::now(), serde_json::Value::Null))
    }

    /// The first stats that `ok` takes; fails after a minute, with the run's messages.
    fn wait_for(&self, what: &str, ok: &dyn Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        self.wait_for_at(what, ok).1
    }

    /// [`RunWatch::wait_for`], with when the stats came.
    fn wait_for_at(
        &self,
        what: &str,
        ok: &dyn Fn(&serde_json::Value) -> bool,
    ) -> (Instant, serde_json::Value) {
        let t = Instant::now();
        loop {
            let (at, s) = self.last_stats_at();
            if ok(&s) {
                return (at, s);
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{what} within a minute:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn run_remote_renders_there_and_here_while_the_server_is_gone() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    let (mut server, addr, secret) = start_serve("127.0.0.1:0", &secret_file);
    let mut run = Command::new(env!("CARGO_BIN_EXE_marionette"))
        .args([
            "run",
            "--test-pattern",
            "--vcam",
            "none",
            "--stats",
            "--cpu",
            "--remote",
        ])
        .arg(addr.to_string())
        .arg("--secret")
        .arg(secret.to_string())
        .arg("--config")
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny-zip.pth.tar"))
        .arg("--record")
        .arg(dir.path().join("out"))
        .arg("--record-motion")
        .arg(dir.path().join("motion.jsonl"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("marionette run");
    let watch = RunWatch::new(&mut run);
    let text = || watch.text();
    let last_stats = || watch.last_stats();
    let wait_for = |what: &str, ok: &dyn Fn(&serde_json::Value) -> bool| watch.wait_for(what, ok);
    // Rendered there: keyframes come from the server, a few hundred bytes up each.
    let there = wait_for("keyframes from the server", &|s| {
        s["remote_connected"] == true && s["remote_keyframes"].as_u64().unwrap_or(0) >= 5
    });
    let up = there["remote_bytes_up_per_frame"].as_f64().unwrap();
    assert!(up < 1000.0, "{up} bytes up a frame");
    // The server dies: the run goes on, here, and says so.
    server.kill().unwrap();
    server.wait().unwrap();
    let frames_then = last_stats()["frames_out"].as_u64().unwrap_or(0);
    let lost = wait_for("rendering here once the server is gone", &|s| {
        s["remote_connected"] == false && s["frames_out"].as_u64().unwrap_or(0) > frames_then + 10
    });
    assert!(
        text().contains("rendering on this machine until it is back"),
        "{}",
        text()
    );
    // It comes back on the same port with the same secret: the run reconnects.
    let (mut server, _, again) = start_serve(&addr.to_string(), &secret_file);
    let restarted = seconds_of_day(std::time::SystemTime::now());
    assert_eq!(again, secret);
    let keyframes_then = lost["remote_keyframes"].as_u64().unwrap_or(0);
    wait_for("keyframes from the server again", &|s| {
        s["remote_connected"] == true
            && s["remote_keyframes"].as_u64().unwrap_or(0) >= keyframes_then + 5
    });
    // The output never stopped: the recording has a frame for every output.
    assert!(
        Command::new("kill")
            .args(["-INT", &run.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = run.wait().unwrap();
    assert!(status.success(), "run: {status}\n{}", text());
    let log = text();
    assert_eq!(
        said(&log, "renders from now on"),
        2,
        "connected, then connected again:\n{log}"
    );
    // The time to reconnect: from the server listening again to the run saying it renders
    // there (its log's time stamp); what the back-off (at most 4 s between tries) and the
    // handshake cost.
    let back = log
        .lines()
        .filter(|l| l.contains("renders from now on"))
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .and_then(log_seconds_of_day);
    if let Some(back) = back {
        eprintln!(
            "reconnected {:.2} s after the server listened again",
            (back - restarted).rem_euclid(86_400.0)
        );
    }
    assert_eq!(said(&log, "rendering on this machine until"), 1, "{log}");
    let _ = server.kill();
    let _ = server.wait();
    recorded_motion_replays(&dir.path().join("motion.jsonl"), &lost);
}

/// The motion recorded by a run that rendered remotely, locally and remotely again: a reference
/// first, then the frames in the order they were captured, at least one for each keyframe the
/// run had from the server before it was lost; `animate --motion` renders all of it.
fn recorded_motion_replays(path: &std::path::Path, lost: &serde_json::Value) {
    use marionette::motion::file::{MotionReader, RecordKind};
    let records = MotionReader::open(path)
        .and_then(|mut r| r.read_all())
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        matches!(
            records.first().map(|r| &r.kind),
            Some(RecordKind::Reference(_))
        ),
        "the motion file starts with a reference: {:?}",
        records.first()
    );
    let frames: Vec<_> = records
        .iter()
        .filter(|r| matches!(r.kind, RecordKind::Frame(_)))
        .collect();
    let remote = lost["remote_keyframes"].as_u64().unwrap_or(0) as usize;
    assert!(
        frames.len() > remote,
        "{} frames recorded, {remote} keyframes came from the server before it was lost",
        frames.len()
    );
    for w in frames.windows(2) {
        assert!(
            w[0].frame < w[1].frame && w[0].t <= w[1].t,
            "frames out of order: line {} (frame {}, {} s), line {} (frame {}, {} s)",
            w[0].line,
            w[0].frame,
            w[0].t,
            w[1].line,
            w[1].frame,
            w[1].t
        );
    }
    let replay = path.with_file_name("replay");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_marionette"))
        .args(["animate", "--engine", "fomm", "--cpu", "--config"])
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny-zip.pth.tar"))
        .arg("--source")
        .arg(fixture("tiny-input-source.png"))
        .arg("--motion")
        .arg(path)
        .arg("--output")
        .arg(&replay)
        .output()
        .expect("marionette animate");
    assert!(
        out.status.success(),
        "animate --motion: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = std::fs::read_dir(&replay).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "png"))
            .count()
    });
    // A live recording has no frame rate: the replay resamples it at 30 a second over the
    // recorded frames' times.
    let span = frames.last().map_or(0.0, |f| f.t) - frames.first().map_or(0.0, |f| f.t);
    let expected = span * 30.0 + 1.0;
    assert!(
        (rendered as f64 - expected).abs() <= 1.5,
        "{rendered} frames rendered for {} recorded over {span:.2} s",
        frames.len()
    );
}

/// Seconds since midnight (UTC) of `t`.
fn seconds_of_day(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() % 86_400.0)
}

/// Seconds since midnight of a log line's time stamp (`2026-12-06T14:01:18.856081Z`, maybe in
/// colour codes).
fn log_seconds_of_day(stamp: &str) -> Option<f64> {
    let time = stamp.split('T').nth(1)?;
    let time: String = time
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':' || *c == '.')
        .collect();
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// `run --remote` in the client's namespace of `net`, against `server` with `secret`.
fn run_remote_in(
    net: &crate::common::netem::Netem,
    server: std::net::SocketAddr,
    secret: &Secret,
    codec: &str,
) -> std::process::Child {
    let cmd = net.command(false, env!("CARGO_BIN_EXE_marionette"));
    run_remote_cmd(cmd, server, secret, codec)
}

/// `run --remote` through `cmd` (a marionette program, perhaps in the client's namespace).
fn run_remote_cmd(
    mut cmd: std::process::Command,
    server: std::net::SocketAddr,
    secret: &Secret,
    codec: &str,
) -> std::process::Child {
    use std::process::Stdio;
    cmd.args([
        "run",
        "--test-pattern",
        "--vcam",
        "none",
        "--stats",
        "--cpu",
        "--remote-codec",
        codec,
        "--remote",
    ])
    .arg(server.to_string())
    .arg("--secret")
    .arg(secret.to_string())
    .arg("--config")
    .arg(fixture("tiny.yaml"))
    .arg("--checkpoint")
    .arg(fixture("tiny-zip.pth.tar"))
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("marionette run in the client's namespace")
}

#[test]
fn through_150_ms_and_2_percent_loss_the_server_keeps_rendering_and_the_output_never_stops() {
    use crate::common::netem::{self, Netem, SERVER_IP};
    if let Err(why) = netem::available() {
        panic!("the lossy-network test needs root, /dev/net/tun and iproute2: {why}");
    }
    let net = Netem::start(Duration::from_millis(150), 0.02).expect("the namespaces");
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr, secret) = start_serve_with(
        net.command(true, env!("CARGO_BIN_EXE_marionette")),
        &format!("{SERVER_IP}:0"),
        &dir.path().join("secret"),
    );
    let mut run = run_remote_in(&net, addr, &secret, "h264");
    let watch = RunWatch::new(&mut run);
    let first = watch.wait_for("keyframes from the server across the lossy link", &|s| {
        s["remote_connected"] == true && s["remote_keyframes"].as_u64().unwrap_or(0) >= 3
    });
    let k0 = first["remote_keyframes"].as_u64().unwrap_or(0);
    let f0 = first["frames_out"].as_u64().unwrap_or(0);
    let later = watch.wait_for("more keyframes from the server", &|s| {
        s["remote_keyframes"].as_u64().unwrap_or(0) >= k0 + 5
            && s["frames_out"].as_u64().unwrap_or(0) > f0 + 20
    });
    let log = watch.text();
    assert!(
        !log.contains("rendering on this machine until"),
        "the link was taken for lost:\n{log}"
    );
    assert_eq!(later["remote_connected"], true, "{log}");
    // The relay did drop packets, and the frames came as H.264 (the tiny fixture's speckled
    // frames compress poorly; a portrait's figures are in the codec test above).
    assert!(
        net.dropped.load(Ordering::SeqCst) > 0,
        "no packet was dropped"
    );
    assert!(log.contains("256x256 H.264 frames"), "{log}");
    let down = later["remote_bytes_down_per_frame"]
        .as_f64()
        .unwrap_or(f64::MAX);
    assert!(down < 196_608.0, "{down} bytes a frame down");
    eprintln!(
        "150 ms, 2 %: {} packets relayed, {} dropped; {down:.0} bytes down a frame",
        net.relayed.load(Ordering::SeqCst),
        net.dropped.load(Ordering::SeqCst)
    );
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &run.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = run.wait().unwrap();
    assert!(status.success(), "run: {status}\n{}", watch.text());
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn over_a_slow_link_the_next_motions_go_before_each_frame_is_back() {
    use crate::common::netem::{self, Netem, SERVER_IP};
    if let Err(why) = netem::available() {
        panic!("the lossy-network test needs root, /dev/net/tun and iproute2: {why}");
    }
    // With one motion in flight a keyframe costs a round trip at least; with the next motions
    // sent before the last frame is back the server renders at its own rate (docs/remote.md's
    // table measures the rates). Here: frames come while later motions are on their way. The
    // round trip is long (1 s) so that this holds even where the machine is so busy that the
    // live loop reads the camera once a second. The connection's first frame takes several
    // round trips (TCP's window opens) and must not be taken for a lost server.
    let net = Netem::start(Duration::from_millis(1000), 0.0).expect("the namespaces");
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr, secret) = start_serve_with(
        net.command(true, env!("CARGO_BIN_EXE_marionette")),
        &format!("{SERVER_IP}:0"),
        &dir.path().join("secret"),
    );
    let mut run = run_remote_in(&net, addr, &secret, "h264");
    let watch = RunWatch::new(&mut run);
    let first = watch.wait_for("keyframes from the server across the slow link", &|s| {
        s["remote_connected"] == true && s["remote_keyframes"].as_u64().unwrap_or(0) >= 3
    });
    let k0 = first["remote_keyframes"].as_u64().unwrap_or(0);
    let later = watch.wait_for(
        "frames to come while later motions are on their way",
        &|s| {
            s["remote_keyframes"].as_u64().unwrap_or(0) >= k0 + 5
                && s["remote_in_flight"].as_u64().unwrap_or(0) >= 1
        },
    );
    let log = watch.text();
    assert!(
        !log.contains("rendering on this machine until"),
        "the link was taken for lost:\n{log}"
    );
    eprintln!(
        "{} keyframes from the server, {} motions in flight when the last came",
        later["remote_keyframes"], later["remote_in_flight"]
    );
    let _ = run.kill();
    let _ = run.wait();
    let _ = server.kill();
    let _ = server.wait();
}

/// The live run's figures over `seconds` once `ready` holds: output frames a second, keyframes
/// from the server a second, and the last stats.
fn measure(watch: &RunWatch, seconds: f64, remote: bool) -> (f64, f64, serde_json::Value) {
    let (from, first) = watch.wait_for_at("the run to start", &|s| {
        s["frames_out"].as_u64().unwrap_or(0) > 0
            && (!remote || s["remote_keyframes"].as_u64().unwrap_or(0) >= 3)
    });
    thread::sleep(Duration::from_secs_f64(seconds));
    // Rates between the two stats' arrivals: the run prints them every 3 s, so the newest may be
    // seconds older than now.
    let (to, last) = watch.last_stats_at();
    let secs = to.duration_since(from).as_secs_f64().max(1e-3);
    let delta = |k: &str| {
        (last[k].as_u64().unwrap_or(0) as f64 - first[k].as_u64().unwrap_or(0) as f64) / secs
    };
    (
        delta("frames_out"),
        delta(if remote {
            "remote_keyframes"
        } else {
            "keyframes"
        }),
        last,
    )
}

/// The processors `cpus` as an affinity mask.
fn cpu_set(cpus: std::ops::Range<usize>) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all zeros is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus {
        // SAFETY: `set` is a valid cpu_set_t and CPU_SET checks `c` against its size.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

/// Keeps the calling thread (and the threads it starts later) on the processors `cpus`.
fn pin_this_thread(cpus: std::ops::Range<usize>) {
    let set = cpu_set(cpus);
    // SAFETY: a valid set of the size given; 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// Runs `cmd`'s program on the processors `cpus` only.
fn pin(cmd: &mut std::process::Command, cpus: std::ops::Range<usize>) {
    use std::os::unix::process::CommandExt;
    let set = cpu_set(cpus);
    // SAFETY: sched_setaffinity is async-signal-safe and `set` is copied into the closure.
    unsafe {
        cmd.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

/// `docs/remote.md`'s network table: `run --remote` through the relay at each round trip and
/// loss, against rendering here. A benchmark, not a check:
/// `cargo test --test app remote::network_table -- --ignored --nocapture`; with
/// `MARIONETTE_BENCH_BIN=PATH` it times that marionette program (a release build) instead of the
/// test build's; with `MARIONETTE_BENCH_SPLIT=1` the server runs on this machine's last processor
/// and the client, the relay and the local run on the others, as if the server were a machine of
/// its own. `MARIONETTE_BENCH_CELLS=150/2,150/0` measures only those cells (round trip in ms /
/// loss in %); `MARIONETTE_BENCH_RUNS=N` runs each cell N times and prints the run with the
/// median output rate (every run's rate on the error stream).
#[test]
#[ignore = "benchmark: prints docs/remote.md's network table"]
fn network_table() {
    use std::process::{Command, Stdio};
    let seconds = 12.0;
    let bin = std::env::var("MARIONETTE_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_marionette").to_string());
    let split = std::env::var("MARIONETTE_BENCH_SPLIT").is_ok_and(|v| v == "1");
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        !split || cpus >= 2,
        "MARIONETTE_BENCH_SPLIT needs two processors"
    );
    let client_cpus = 0..cpus.saturating_sub(1);
    let mut local = Command::new(&bin);
    if split {
        // This thread, and the relay's threads it starts, with the client.
        pin_this_thread(client_cpus.clone());
        pin(&mut local, client_cpus);
    }
    let mut local = local
        .args([
            "run",
            "--test-pattern",
            "--vcam",
            "none",
            "--stats",
            "--cpu",
            "--config",
        ])
        .arg(fixture("tiny.yaml"))
        .arg("--checkpoint")
        .arg(fixture("tiny-zip.pth.tar"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let watch = RunWatch::new(&mut local);
    let (fps, kfps, s) = measure(&watch, seconds, false);
    let local_latency = s["keyframe_latency_ms_p50"].as_f64().unwrap_or(0.0);
    let _ = local.kill();
    let _ = local.wait();
    println!(
        "| round trip | loss | up, bytes a motion | motions a keyframe | down, bytes a frame | keyframe latency p50 | added over local | keyframes a second | output frames a second | reconnections |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!("| local | - | - | - | - | {local_latency:.0} ms | - | {kfps:.1} | {fps:.1} | - |");
    let cells = std::env::var("MARIONETTE_BENCH_CELLS").ok();
    let runs: usize = std::env::var("MARIONETTE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    for rtt in [0u64, 50, 150] {
        for loss in [0.0, 0.02, 0.10] {
            let cell = format!("{rtt}/{:.0}", loss * 100.0);
            if cells
                .as_deref()
                .is_some_and(|c| !c.split(',').any(|c| c.trim() == cell))
            {
                continue;
            }
            let mut rows: Vec<(f64, String)> = (0..runs)
                .map(|_| {
                    let split = split.then_some(cpus);
                    network_cell(&bin, split, rtt, loss, seconds, local_latency)
                })
                .collect();
            rows.sort_by(|a, b| a.0.total_cmp(&b.0));
            let rates: Vec<String> = rows.iter().map(|r| format!("{:.1}", r.0)).collect();
            eprintln!("{cell}: output frames a second {}", rates.join(", "));
            println!("{}", rows[rows.len() / 2].1);
        }
    }
}

/// One cell of [`network_table`]: the output's frame rate and the table's row. `split`: the
/// server on the last of that many processors, the client on the others.
fn network_cell(
    bin: &str,
    split: Option<usize>,
    rtt: u64,
    loss: f64,
    seconds: f64,
    local_latency: f64,
) -> (f64, String) {
    use crate::common::netem::{Netem, SERVER_IP};
    // With the server on a processor of its own: the machine's processors (this thread, pinned to
    // the client's, no longer sees them all).
    let cpus = split.unwrap_or(1).max(1);
    let (client_cpus, server_cpus) = (0..cpus.saturating_sub(1), cpus - 1..cpus);
    let pinned = |mut c: std::process::Command, on: std::ops::Range<usize>| {
        if split.is_some() {
            pin(&mut c, on);
        }
        c
    };
    let net = Netem::start(Duration::from_millis(rtt), loss).expect("the namespaces");
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr, secret) = start_serve_with(
        pinned(net.command(true, bin), server_cpus),
        &format!("{SERVER_IP}:0"),
        &dir.path().join("secret"),
    );
    let mut run = run_remote_cmd(
        pinned(net.command(false, bin), client_cpus),
        addr,
        &secret,
        "h264",
    );
    let watch = RunWatch::new(&mut run);
    let (fps, kfps, s) = measure(&watch, seconds, true);
    let latency = s["keyframe_latency_ms_p50"].as_f64().unwrap_or(0.0);
    eprintln!(
        "{rtt} ms / {:.0} %: output {fps:.1} frames a second, the loop's work a frame {:.1} ms \
         (p50), camera frames dropped {}",
        loss * 100.0,
        s["inference_ms_p50"].as_f64().unwrap_or(0.0),
        s["dropped_capture"].as_u64().unwrap_or(0)
    );
    let row = format!(
        "| {rtt} ms | {:.0} % | {:.0} | {:.2} | {:.0} | {latency:.0} ms | {:+.0} ms | {kfps:.1} | {fps:.1} | {} |",
        loss * 100.0,
        s["remote_bytes_up_per_frame"].as_f64().unwrap_or(0.0),
        s["remote_motions"].as_f64().unwrap_or(0.0)
            / s["remote_keyframes"].as_f64().unwrap_or(1.0).max(1.0),
        s["remote_bytes_down_per_frame"].as_f64().unwrap_or(0.0),
        latency - local_latency,
        said(&watch.text(), "rendering on this machine until")
    );
    let _ = run.kill();
    let _ = run.wait();
    let _ = server.kill();
    let _ = server.wait();
    (fps, row)
}
