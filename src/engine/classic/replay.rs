//! Recorded motion: the reference frame and per-frame motion in the form motion files keep, and
//! the portrait rendered from them without a driving video.

use super::*;

impl ClassicEngine {
    /// The reference frame in the form motion files keep, once one is set.
    pub fn reference_motion(&self) -> Option<ClassicReference> {
        if let Some(r) = &self.reference {
            let t = &r.texture;
            return Some(ClassicReference {
                anchors: r.anchors.clone(),
                spacing: r.spacing,
                texture: t.cloud(t.floor).map(|c| TextureCloud {
                    centroid: c.centroid,
                    size: c.size,
                    floor: t.floor,
                }),
            });
        }
        self.replay.clone()
    }

    /// Makes a recorded reference frame the reference: [`ClassicEngine::animate_motion`] renders
    /// motions relative to it.
    pub fn set_reference_motion(
        &mut self,
        reference: ClassicReference,
    ) -> Result<(), ClassicError> {
        let (w, h) = (self.width as f64, self.height as f64);
        let inside = reference.anchors.iter().all(|a| {
            a[0].is_finite() && a[1].is_finite() && a[0].abs() <= 4.0 * w && a[1].abs() <= 4.0 * h
        });
        if reference.anchors.is_empty()
            || !inside
            || reference.spacing.is_nan()
            || reference.spacing <= 0.0
        {
            return Err(ClassicError::BadMotion(
                "reference has no anchors, or anchors far outside the frame".into(),
            ));
        }
        self.recalibrate();
        self.calibrate_next = false;
        self.reference_view = FrameView::IDENTITY;
        self.replay = Some(reference);
        self.update_framing();
        Ok(())
    }

    /// The portrait moved by a recorded motion relative to the reference set with
    /// [`ClassicEngine::set_reference_motion`] (or the live reference), with adapt scale as set.
    pub fn animate_motion(&mut self, frame: &ClassicFrame) -> Result<Tensor, ClassicError> {
        if self.portraits.current().is_none() {
            return Err(ClassicError::NoSource);
        }
        if !self.is_calibrated() {
            return Err(ClassicError::BadMotion(
                "came before any reference frame".into(),
            ));
        }
        self.render_recorded(frame)
    }

    /// Renders `frame` relative to the reference in use (live or recorded).
    pub(super) fn render_recorded(&mut self, frame: &ClassicFrame) -> Result<Tensor, ClassicError> {
        let (anchors, spacing) = match (&self.reference, &self.replay) {
            (Some(r), _) => (&r.anchors, r.spacing),
            (None, Some(r)) => (&r.anchors, r.spacing),
            (None, None) => return self.output(None),
        };
        if frame
            .anchors
            .as_ref()
            .is_some_and(|m| m.len() != anchors.len())
        {
            return Err(ClassicError::BadMotion(format!(
                "has {} anchor maps for a reference with {} anchors",
                frame.anchors.as_ref().map_or(0, Vec::len),
                anchors.len()
            )));
        }
        let (blend, motion) = self.blend(anchors, spacing, frame);
        self.motion = Some(motion);
        self.output(blend.as_ref())
    }

    /// The frame's data as (3, H, W) f32 on the CPU, after checking its shape.
    pub(super) fn frame_data(
        &self,
        what: &'static str,
        t: &Tensor,
    ) -> Result<Vec<f32>, ClassicError> {
        if t.dims() != [1, 3, self.height, self.width] {
            return Err(ClassicError::Shape {
                what,
                height: self.height,
                width: self.width,
                got: t.dims().to_vec(),
            });
        }
        Ok(t.to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?)
    }
}
