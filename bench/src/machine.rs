//! What the numbers were measured on.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub threads: usize,
    /// The vector extensions tract and ONNX Runtime pick their kernels by.
    pub vector_isa: Vec<String>,
    pub arch: String,
}

impl Machine {
    pub fn this() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| {
            cpuinfo
                .lines()
                .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        };
        let flags = field("flags").or_else(|| field("Features")).unwrap_or_default();
        let wanted = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "asimd", "asimddp", "i8mm"];
        Machine {
            cpu: field("model name").or_else(|| field("Model")).unwrap_or_else(|| "unknown CPU".into()),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            vector_isa: wanted
                .iter()
                .filter(|w| flags.split_whitespace().any(|f| f == **w))
                .map(|w| w.to_string())
                .collect(),
            arch: std::env::consts::ARCH.to_string(),
        }
    }

    pub fn describe(&self) -> String {
        format!("{} ({}, {} threads, {})", self.cpu, self.arch, self.threads, self.vector_isa.join(" "))
    }
}
