//! The compute device, and what this build can do on it. candle selects its SIMD kernels at
//! compile time, so the start-up log says which paths this binary carries and what the CPU has:
//! a mismatch (a default x86-64 build on an AVX2 machine) costs about 5x in model speed.

use candle_core::Device;

/// The device models run on: CUDA when built with the `cuda` feature and a GPU is present.
pub fn select() -> Device {
    #[cfg(feature = "cuda")]
    {
        match Device::new_cuda(0) {
            Ok(d) => return d,
            Err(e) => {
                tracing::warn!("cuda feature built in but no usable GPU ({e}); using the CPU")
            }
        }
    }
    Device::Cpu
}

pub fn describe(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(_) => "cuda:0".to_string(),
        _ => format!("{device:?}"),
    }
}

/// One line naming the SIMD paths compiled into this binary and those the CPU offers.
pub fn simd_report() -> String {
    let built: Vec<&str> = [
        ("avx", cfg!(target_feature = "avx")),
        ("avx2", cfg!(target_feature = "avx2")),
        ("fma", cfg!(target_feature = "fma")),
        ("f16c", cfg!(target_feature = "f16c")),
        ("avx512f", cfg!(target_feature = "avx512f")),
        ("neon", cfg!(target_feature = "neon")),
    ]
    .into_iter()
    .filter_map(|(n, on)| on.then_some(n))
    .collect();
    #[allow(unused_mut)]
    let mut cpu: Vec<&str> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        for (n, on) in [
            ("avx", std::arch::is_x86_feature_detected!("avx")),
            ("avx2", std::arch::is_x86_feature_detected!("avx2")),
            ("fma", std::arch::is_x86_feature_detected!("fma")),
            ("f16c", std::arch::is_x86_feature_detected!("f16c")),
            ("avx512f", std::arch::is_x86_feature_detected!("avx512f")),
        ] {
            if on {
                cpu.push(n);
            }
        }
    }
    let missing: Vec<&&str> = cpu
        .iter()
        .filter(|f| !built.contains(f) && **f != "avx512f")
        .collect();
    let advice = if missing.is_empty() {
        String::new()
    } else {
        format!(
            " (the CPU has {missing:?} that this build does not use: rebuild with the project's .cargo/config.toml)"
        )
    };
    format!(
        "simd built-in=[{}] cpu=[{}] candle avx={} f16c={} own q5_0/q4_1/q8_0 kernels={} cuda={} threads={}{}",
        built.join(","),
        cpu.join(","),
        candle_core::utils::with_avx(),
        candle_core::utils::with_f16c(),
        super::qkernel::kernel_name(),
        candle_core::utils::cuda_is_available(),
        candle_core::utils::get_num_threads(),
        advice
    )
}
