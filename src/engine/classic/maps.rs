//! The classic engine's motion maps: [`Affine`] (FOMM's first-order local motion, a 2x2 Jacobian
//! and a translation) and [`LocalMap`] (an affine map around a centre, with optional second-order
//! terms). Shared by the fits ([`super::affine`]) and the blended flow ([`super::flow`]).

/// y = a x + b, `a` row-major.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// The linear part (the Jacobian), row-major.
    pub a: [[f64; 2]; 2],
    /// The translation.
    pub b: [f64; 2],
}

impl Affine {
    /// y = x.
    pub const IDENTITY: Affine = Affine {
        a: [[1.0, 0.0], [0.0, 1.0]],
        b: [0.0, 0.0],
    };

    /// The image of `p`.
    #[inline]
    pub fn apply(&self, p: [f64; 2]) -> [f64; 2] {
        [
            self.a[0][0] * p[0] + self.a[0][1] * p[1] + self.b[0],
            self.a[1][0] * p[0] + self.a[1][1] * p[1] + self.b[1],
        ]
    }

    /// Determinant of `a`.
    pub fn det(&self) -> f64 {
        self.a[0][0] * self.a[1][1] - self.a[0][1] * self.a[1][0]
    }

    /// The inverse map; `None` when `a` is (nearly) singular or not finite.
    pub fn inverse(&self) -> Option<Affine> {
        let inv = invert2(self.a)?;
        let b = [
            -(inv[0][0] * self.b[0] + inv[0][1] * self.b[1]),
            -(inv[1][0] * self.b[0] + inv[1][1] * self.b[1]),
        ];
        let out = Affine { a: inv, b };
        out.is_finite().then_some(out)
    }

    /// Whether every entry is finite.
    pub fn is_finite(&self) -> bool {
        self.a
            .iter()
            .flatten()
            .chain(&self.b)
            .all(|v| v.is_finite())
    }
}

/// Inverse of a 2x2 matrix; `None` when its determinant is tiny relative to its entries or not finite.
pub fn invert2(a: [[f64; 2]; 2]) -> Option<[[f64; 2]; 2]> {
    let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
    let scale: f64 = a.iter().flatten().map(|v| v * v).sum();
    if !(det.is_finite() && scale.is_finite()) || det.abs() <= 1e-12 * scale.max(1e-300) {
        return None;
    }
    Some([
        [a[1][1] / det, -a[0][1] / det],
        [-a[1][0] / det, a[0][0] / det],
    ])
}

/// A local map around `centre`: `M(z) = affine(z) + q m(z - centre)` with the second-order terms
/// `m(d) = (dx^2, dx dy, dy^2)` (`q` zero for a plain affine map).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalMap {
    /// The point the second-order terms are measured from.
    pub centre: [f64; 2],
    /// The affine part, applied to `z` itself (not to `z - centre`).
    pub affine: Affine,
    /// Second-order coefficients: row i gives output i's weights of (dx^2, dx dy, dy^2).
    pub q: [[f64; 3]; 2],
}

impl LocalMap {
    /// The affine map `affine` around `centre`.
    pub fn affine(centre: [f64; 2], affine: Affine) -> Self {
        Self {
            centre,
            affine,
            q: [[0.0; 3]; 2],
        }
    }

    /// The image of `z`.
    #[inline]
    pub fn apply(&self, z: [f64; 2]) -> [f64; 2] {
        let p = self.affine.apply(z);
        let (dx, dy) = (z[0] - self.centre[0], z[1] - self.centre[1]);
        let m = [dx * dx, dx * dy, dy * dy];
        [
            p[0] + self.q[0][0] * m[0] + self.q[0][1] * m[1] + self.q[0][2] * m[2],
            p[1] + self.q[1][0] * m[0] + self.q[1][1] * m[1] + self.q[1][2] * m[2],
        ]
    }

    /// The derivative of the map at `z`.
    #[inline]
    pub fn jacobian(&self, z: [f64; 2]) -> [[f64; 2]; 2] {
        let (dx, dy) = (z[0] - self.centre[0], z[1] - self.centre[1]);
        let a = self.affine.a;
        let q = self.q;
        [
            [
                a[0][0] + 2.0 * q[0][0] * dx + q[0][1] * dy,
                a[0][1] + q[0][1] * dx + 2.0 * q[0][2] * dy,
            ],
            [
                a[1][0] + 2.0 * q[1][0] * dx + q[1][1] * dy,
                a[1][1] + q[1][1] * dx + 2.0 * q[1][2] * dy,
            ],
        ]
    }

    /// Whether every entry is finite.
    pub fn is_finite(&self) -> bool {
        self.affine.is_finite()
            && self
                .centre
                .iter()
                .chain(self.q.iter().flatten())
                .all(|v| v.is_finite())
    }
}
