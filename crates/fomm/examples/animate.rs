//! Animates a portrait with driving frames, the way the original demo does (relative motion with
//! adapt scale), from tensors in a safetensors file: `source` and `driving.0`, `driving.1`, ...,
//! each (1, 3, H, W) in [0, 1]. Writes `prediction.N` to the output file.
//!
//! ```sh
//! cargo run --release -p fomm --example animate -- CHECKPOINT CONFIG INPUTS.safetensors OUT.safetensors
//! ```
//!
//! CHECKPOINT is a published `.pth.tar` (or its safetensors conversion), CONFIG a published name
//! (`vox-256`, `vox-adv-256`, ...) or the original YAML file.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use fomm::load::checkpoint::Checkpoint;
use fomm::load::presets::resolve_config;
use fomm::model::Fomm;
use fomm::motion_transfer::{MotionTransfer, TransferOptions};
use fomm::ops::precision::{PrecisionChoice, PrecisionPlan};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [checkpoint, config, inputs, output] = args.as_slice() else {
        return Err("usage: animate CHECKPOINT CONFIG INPUTS.safetensors OUT.safetensors".into());
    };
    let config = resolve_config(config)?;
    let weights = Checkpoint::load(Path::new(checkpoint))?;
    // bf16 where this processor multiplies faster that way, f32 elsewhere.
    let precision = PrecisionChoice::Auto.resolve()?;
    let plan = PrecisionPlan::for_precision(precision);
    let model = Fomm::from_checkpoint(&config, &weights, checkpoint, &Device::Cpu, plan)?;
    let inputs = candle_core::safetensors::load(inputs, &Device::Cpu)?;
    let source = inputs
        .get("source")
        .ok_or("no `source` tensor in the inputs")?;

    // Once per portrait: its keypoints and the generator's encoding.
    let portrait = model.prepare_source(source)?;
    // The first driving frame is the reference the motion is measured against.
    let mut transfer = MotionTransfer::new(TransferOptions::default());
    let mut out: HashMap<String, Tensor> = HashMap::new();
    for i in 0.. {
        let Some(frame) = inputs.get(&format!("driving.{i}")) else {
            break;
        };
        let kp_driving = model.detect(frame)?;
        let kp = transfer.transfer(&portrait.keypoints, &kp_driving)?;
        let rendered = model.render(&portrait, &kp, false)?;
        out.insert(format!("prediction.{i}"), rendered.prediction);
    }
    println!(
        "{} frames at {precision} ({}), written to {output}",
        out.len(),
        config.name
    );
    candle_core::safetensors::save(&out, output)?;
    Ok(())
}
