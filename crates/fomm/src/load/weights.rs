//! Where the model's parameters come from, and the strict check that a checkpoint fits a config.
//!
//! The modules ask for their tensors through a `candle_nn::VarBuilder` with exactly the original
//! PyTorch attribute paths (`vb.pp("predictor").pp("encoder")...`). The backend here records every
//! request, so after building a model we know the exact key set and shapes the config implies and
//! can compare it with what the checkpoint holds: a missing key, an unexpected key or a shape
//! mismatch becomes one error that lists them and proposes the `model_params` that would fit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::{Init, VarBuilder};

/// A parameter the model asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// The shape it asked for.
    pub shape: Vec<usize>,
    /// The dtype it asked for.
    pub dtype: DType,
}

/// One disagreement between a checkpoint and a config.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyProblem {
    /// The config needs a parameter the checkpoint lacks.
    Missing {
        /// The parameter's full name.
        key: String,
        /// The shape the config implies.
        expected: Vec<usize>,
    },
    /// The checkpoint holds a tensor the config does not use.
    Unexpected {
        /// The tensor's full name.
        key: String,
        /// Its shape in the checkpoint.
        found: Vec<usize>,
    },
    /// Both have the parameter, in different shapes.
    ShapeMismatch {
        /// The parameter's full name.
        key: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the checkpoint.
        found: Vec<usize>,
    },
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::Missing { key, expected } => {
                write!(
                    f,
                    "missing key `{key}` (the config expects shape {expected:?})"
                )
            }
            KeyProblem::Unexpected { key, found } => write!(
                f,
                "unexpected key `{key}` (shape {found:?} in the checkpoint; the config has no such parameter)"
            ),
            KeyProblem::ShapeMismatch {
                key,
                expected,
                found,
            } => write!(
                f,
                "shape mismatch for `{key}`: the config expects {expected:?}, the checkpoint has {found:?}"
            ),
        }
    }
}

enum Source {
    /// Tensors from a checkpoint, keyed by full name.
    Tensors(BTreeMap<String, Tensor>),
    /// Random values (benchmarks, tests): He-normal convolutions, identity batch norms.
    Random,
}

struct Recorder {
    source: Source,
    requested: Mutex<BTreeMap<String, ParamSpec>>,
}

/// A `VarBuilder` backend that serves tensors and remembers every request.
#[derive(Clone)]
pub struct WeightSource {
    inner: Arc<Recorder>,
}

impl WeightSource {
    /// Serves the given tensors, keyed by full name (`generator.first.conv.weight`, ...). A
    /// missing or misshaped one is served as zeros and shows up in [`WeightSource::problems`].
    pub fn from_tensors(tensors: BTreeMap<String, Tensor>) -> Self {
        Self::new(Source::Tensors(tensors))
    }

    /// Serves random values: He-normal 4-D weights, zero biases and running means, ones for 1-D
    /// weights and running variances, other tensors N(0, 0.05) (or the constant asked for).
    pub fn random() -> Self {
        Self::new(Source::Random)
    }

    fn new(source: Source) -> Self {
        Self {
            inner: Arc::new(Recorder {
                source,
                requested: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// A `VarBuilder` reading from this source (float32 on `device`).
    pub fn var_builder(&self, device: &Device) -> VarBuilder<'static> {
        let backend: Box<dyn candle_nn::var_builder::SimpleBackend> = Box::new(self.clone());
        VarBuilder::from_backend(backend, DType::F32, device.clone())
    }

    /// Everything the model asked for so far.
    pub fn requested(&self) -> BTreeMap<String, ParamSpec> {
        match self.inner.requested.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Compares the requested keys under `prefix` with the checkpoint's keys under `prefix`.
    pub fn problems(&self, prefix: &str) -> Vec<KeyProblem> {
        let Source::Tensors(tensors) = &self.inner.source else {
            return Vec::new();
        };
        let requested = self.requested();
        let mut problems = Vec::new();
        for (key, spec) in requested.iter().filter(|(k, _)| k.starts_with(prefix)) {
            match tensors.get(key) {
                None => problems.push(KeyProblem::Missing {
                    key: key.clone(),
                    expected: spec.shape.clone(),
                }),
                Some(t) if t.dims() != spec.shape.as_slice() => {
                    problems.push(KeyProblem::ShapeMismatch {
                        key: key.clone(),
                        expected: spec.shape.clone(),
                        found: t.dims().to_vec(),
                    })
                }
                Some(_) => {}
            }
        }
        for (key, t) in tensors.iter().filter(|(k, _)| k.starts_with(prefix)) {
            if !requested.contains_key(key) {
                problems.push(KeyProblem::Unexpected {
                    key: key.clone(),
                    found: t.dims().to_vec(),
                });
            }
        }
        problems
    }

    fn record(&self, name: &str, shape: &Shape, dtype: DType) {
        let spec = ParamSpec {
            shape: shape.dims().to_vec(),
            dtype,
        };
        match self.inner.requested.lock() {
            Ok(mut g) => {
                g.insert(name.to_string(), spec);
            }
            Err(poisoned) => {
                poisoned.into_inner().insert(name.to_string(), spec);
            }
        }
    }
}

fn random_tensor(
    s: &Shape,
    name: &str,
    init: Init,
    dtype: DType,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    let dims = s.dims();
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let t = match leaf {
        // Batch norms at identity, so activations keep their scale through deep stacks.
        "running_var" | "weight" if dims.len() == 1 => Tensor::ones(s, DType::F32, dev)?,
        "running_mean" | "bias" => Tensor::zeros(s, DType::F32, dev)?,
        "num_batches_tracked" => Tensor::zeros(s, DType::I64, dev)?,
        "weight" if dims.len() == 4 => {
            // He initialisation (N(0, 2/fan_in)), as the fixtures' random weights use.
            let fan_in = (dims[1] * dims[2] * dims[3]).max(1) as f64;
            Tensor::randn(0f32, (2.0 / fan_in).sqrt() as f32, s, dev)?
        }
        _ => match init {
            Init::Const(v) => (Tensor::ones(s, DType::F32, dev)? * v)?,
            _ => Tensor::randn(0f32, 0.05, s, dev)?,
        },
    };
    if leaf == "num_batches_tracked" {
        Ok(t)
    } else {
        t.to_dtype(dtype)
    }
}

impl candle_nn::var_builder::SimpleBackend for WeightSource {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.record(name, &s, dtype);
        match &self.inner.source {
            Source::Random => random_tensor(&s, name, h, dtype, dev),
            Source::Tensors(map) => match map.get(name) {
                // Placeholders let the build go on, so that every problem is reported at once by
                // `problems()`; a model is never used when there are problems.
                Some(t) if t.dims() == s.dims() => t.to_dtype(dtype)?.to_device(dev),
                _ => Tensor::zeros(s, dtype, dev),
            },
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match &self.inner.source {
            Source::Tensors(map) => match map.get(name) {
                Some(t) => {
                    self.record(name, t.shape(), dtype);
                    t.to_dtype(dtype)?.to_device(dev)
                }
                None => Err(candle_core::Error::CannotFindTensor {
                    path: name.to_string(),
                }),
            },
            Source::Random => Err(candle_core::Error::CannotFindTensor {
                path: name.to_string(),
            }),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        match &self.inner.source {
            Source::Tensors(map) => map.contains_key(name),
            Source::Random => false,
        }
    }
}
