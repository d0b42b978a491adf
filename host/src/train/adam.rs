//! Adam (Kingma & Ba 2015) with its state in plain tensors.
//!
//! Written here rather than using `tch::nn::Adam` because a resumed run must continue
//! bit-identically, and tch's optimizer keeps its moment estimates inside libtorch with no way
//! to save or restore them.

use std::path::Path;
use tch::{Kind, Tensor};

pub struct Adam {
    pub lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    step: i64,
    params: Vec<(String, Tensor)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    /// Optimises `params` (name, tensor), e.g. the trainable variables of a VarStore.
    pub fn new(mut params: Vec<(String, Tensor)>, lr: f64) -> Adam {
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |p: &(String, Tensor)| p.1.zeros_like();
        let m = params.iter().map(zeros).collect();
        let v = params.iter().map(zeros).collect();
        Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, step: 0, params, m, v }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    pub fn step(&mut self) {
        self.step += 1;
        let correction1 = 1.0 - self.beta1.powi(self.step as i32);
        let correction2 = 1.0 - self.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for ((_, p), (m, v)) in self.params.iter_mut().zip(self.m.iter_mut().zip(self.v.iter_mut())) {
                let grad = p.grad();
                if !grad.defined() {
                    continue;
                }
                *m = &*m * self.beta1 + &grad * (1.0 - self.beta1);
                *v = &*v * self.beta2 + grad.square() * (1.0 - self.beta2);
                let update = (&*m / correction1) / ((&*v / correction2).sqrt() + self.eps) * self.lr;
                let _ = p.g_sub_(&update);
            }
        });
    }

    /// The moments and step count, as named tensors.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = vec![("step".to_string(), Tensor::from_slice(&[self.step]))];
        for ((name, _), (m, v)) in self.params.iter().zip(self.m.iter().zip(&self.v)) {
            state.push((format!("m.{name}"), m.shallow_clone()));
            state.push((format!("v.{name}"), v.shallow_clone()));
        }
        state
    }

    pub fn load_state(&mut self, path: &Path) -> anyhow::Result<()> {
        let state: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
        let get = |key: &str| {
            state.get(key).ok_or_else(|| anyhow::anyhow!("{}: optimizer state has no {key}", path.display()))
        };
        self.step = get("step")?.int64_value(&[0]);
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (moments, prefix) in [(&mut self.m, "m"), (&mut self.v, "v")] {
                let saved = get(&format!("{prefix}.{name}"))?;
                anyhow::ensure!(saved.size() == p.size(), "{}: {prefix}.{name} has the wrong shape", path.display());
                moments[i] = saved.to_kind(Kind::Float).to_device(p.device());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimises_a_quadratic() {
        let x = Tensor::from_slice(&[3.0f32, -2.0]).set_requires_grad(true);
        let mut adam = Adam::new(vec![("x".into(), x.shallow_clone())], 0.1);
        for _ in 0..300 {
            adam.zero_grad();
            x.square().sum(Kind::Float).backward();
            adam.step();
        }
        assert!(x.abs().max().double_value(&[]) < 1e-2, "{x}");
    }

    #[test]
    fn first_step_moves_each_weight_by_lr() {
        // Bias-corrected first step: m/v^(1/2) = g/|g| = sign(g).
        let x = Tensor::from_slice(&[1.0f32, -1.0]).set_requires_grad(true);
        let mut adam = Adam::new(vec![("x".into(), x.shallow_clone())], 0.01);
        (x.shallow_clone() * Tensor::from_slice(&[5.0f32, 0.5])).sum(Kind::Float).backward();
        adam.step();
        let moved: Vec<f32> = Vec::try_from(&x).unwrap();
        assert!((moved[0] - 0.99).abs() < 1e-5 && (moved[1] + 1.01).abs() < 1e-5, "{moved:?}");
    }
}
