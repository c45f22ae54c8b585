//! The `GpuScrubber` trait: what happens to a GPU before it goes to a new tenant.
//!
//! 1. **Scrub**: every byte of device memory the driver lets us allocate is overwritten with a
//!    pattern, read back and compared, then zeroed — the next tenant never sees the last one's
//!    data.
//! 2. **Health check**: a small kernel with a known answer (every element of a buffer gets a
//!    hash of its index; the host checks them all), and a device-to-device copy whose
//!    bandwidth is reported.
//!
//! A GPU failing either is unhealthy: the instance that wanted it fails with the reason and
//! the GPU is reported to the scheduler. The real implementation is [`Cuda`] (cudarc, loaded
//! at run time); [`SimScrubber`] serves simulated hosts. CUDA sees only GPUs bound to the
//! NVIDIA driver: a GPU is scrubbed there, before it is handed to VFIO for the guest.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, PartialEq)]
pub struct ScrubReport {
    pub pci_address: String,
    /// Device memory overwritten and verified.
    pub scrubbed_mib: u64,
    /// Device memory in all (the difference is held by the driver and the check itself).
    pub total_mib: u64,
    /// Device-to-device copy bandwidth (read + write), GB/s.
    pub bandwidth_gbps: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrubError {
    /// Scrubbing cannot run on this host at all (no driver).
    #[error("GPU scrubbing is not available on this host: {0}")]
    Unavailable(String),
    /// The GPU failed: it must not go to a tenant.
    #[error("GPU {pci_address} is unhealthy: {reason}")]
    Unhealthy { pci_address: String, reason: String },
}

pub trait GpuScrubber: Send + Sync + 'static {
    /// Scrubs the GPU's memory and checks its health. Blocks for seconds on a real GPU.
    fn prepare(&self, pci_address: &str) -> Result<ScrubReport, ScrubError>;
}

/// Simulated GPUs: instant, healthy unless marked failing.
#[derive(Debug, Default)]
pub struct SimScrubber {
    failing: Mutex<HashSet<String>>,
    prepared: Mutex<Vec<String>>,
}

impl SimScrubber {
    /// Makes the GPU fail its next checks (a test's way to break hardware).
    pub fn fail(&self, pci_address: &str) {
        self.failing.lock().unwrap().insert(pci_address.to_owned());
    }

    /// The GPUs prepared so far, in order.
    pub fn prepared(&self) -> Vec<String> {
        self.prepared.lock().unwrap().clone()
    }
}

impl GpuScrubber for SimScrubber {
    fn prepare(&self, pci_address: &str) -> Result<ScrubReport, ScrubError> {
        self.prepared.lock().unwrap().push(pci_address.to_owned());
        if self.failing.lock().unwrap().contains(pci_address) {
            return Err(ScrubError::Unhealthy {
                pci_address: pci_address.to_owned(),
                reason:
                    "memory read back differs from what was written at 0x2a000000 (simulated fault)"
                        .into(),
            });
        }
        Ok(ScrubReport {
            pci_address: pci_address.to_owned(),
            scrubbed_mib: 0,
            total_mib: 0,
            bandwidth_gbps: 0.0,
            seconds: 0.0,
        })
    }
}

/// A host whose GPUs cannot be scrubbed (no CUDA driver): every GPU is refused with why.
#[derive(Debug)]
pub struct Refuse(pub String);

impl GpuScrubber for Refuse {
    fn prepare(&self, _pci_address: &str) -> Result<ScrubReport, ScrubError> {
        Err(ScrubError::Unavailable(self.0.clone()))
    }
}

/// The health check's kernel: `out[i] = (i * 2654435761) ^ 0x12345678` for `i < n`.
/// Hand-written PTX (ISA 7.0, sm_52 and later, JIT-compiled by the driver), so no CUDA
/// toolkit is needed on the host.
pub const CHECK_PTX: &str = r#"
.version 7.0
.target sm_52
.address_size 64

.visible .entry vmcloud_check(
    .param .u64 out,
    .param .u32 n
)
{
    .reg .pred %p<2>;
    .reg .b32 %r<8>;
    .reg .b64 %rd<5>;

    ld.param.u64 %rd1, [out];
    ld.param.u32 %r1, [n];
    mov.u32 %r2, %ctaid.x;
    mov.u32 %r3, %ntid.x;
    mov.u32 %r4, %tid.x;
    mad.lo.s32 %r5, %r2, %r3, %r4;
    setp.ge.u32 %p1, %r5, %r1;
    @%p1 bra DONE;
    mul.lo.s32 %r6, %r5, -1640531535;
    xor.b32 %r7, %r6, 305419896;
    cvta.to.global.u64 %rd2, %rd1;
    mul.wide.u32 %rd3, %r5, 4;
    add.s64 %rd4, %rd2, %rd3;
    st.global.u32 [%rd4], %r7;
DONE:
    ret;
}
"#;

/// What [`CHECK_PTX`] must write at index `i`.
pub fn check_value(i: u32) -> u32 {
    i.wrapping_mul(2_654_435_761) ^ 0x1234_5678
}

/// Whether the CUDA driver library can be found, asked without loading it: `ldconfig`'s
/// cache, then the usual places.
pub fn libcuda_installed() -> bool {
    let cached = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so.1"));
    cached
        || [
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            "/usr/lib64/libcuda.so.1",
            "/usr/lib/wsl/lib/libcuda.so.1",
        ]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
}

/// Real GPUs, through the CUDA driver API (cudarc, loaded at run time).
#[derive(Debug)]
pub struct Cuda {
    _private: (),
}

impl Cuda {
    /// Loads the CUDA driver. Err: why scrubbing is not available (no driver); never panics.
    pub fn load() -> Result<Cuda, ScrubError> {
        if !libcuda_installed() {
            return Err(ScrubError::Unavailable(
                "libcuda.so.1 (the NVIDIA driver) is not installed".into(),
            ));
        }
        // cudarc panics on first use when the library cannot be loaded; ask it first.
        // SAFETY: `is_culib_present` only tries to dlopen the driver library and reports
        // whether that worked; it has no preconditions.
        #[allow(unsafe_code)]
        let present = unsafe { cudarc::driver::sys::is_culib_present() };
        if !present {
            return Err(ScrubError::Unavailable(
                "libcuda.so.1 is installed but cannot be loaded".into(),
            ));
        }
        cudarc::driver::CudaContext::device_count()
            .map_err(|e| ScrubError::Unavailable(format!("the CUDA driver does not start: {e}")))?;
        Ok(Cuda { _private: () })
    }

    /// The CUDA ordinal of the GPU at a PCI address (CUDA numbers GPUs fastest first, not in
    /// PCI order).
    fn ordinal(&self, pci_address: &str) -> Result<usize, String> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        let count = cudarc::driver::CudaContext::device_count().map_err(|e| e.to_string())?;
        for ordinal in 0..count.max(0) as usize {
            let ctx = cudarc::driver::CudaContext::new(ordinal).map_err(|e| e.to_string())?;
            let domain = ctx.attribute(A::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID);
            let bus = ctx.attribute(A::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID);
            let dev = ctx.attribute(A::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID);
            if let (Ok(domain), Ok(bus), Ok(dev)) = (domain, bus, dev)
                && format!("{domain:04x}:{bus:02x}:{dev:02x}.0") == pci_address
            {
                return Ok(ordinal);
            }
        }
        Err(format!(
            "CUDA does not see it (bound to another driver, e.g. vfio-pci, or fallen off the bus); {count} CUDA device(s) here"
        ))
    }

    fn run(&self, pci_address: &str) -> Result<ScrubReport, String> {
        use cudarc::driver::{CudaContext, LaunchConfig, PushKernelArg};
        let started = Instant::now();
        let ctx = CudaContext::new(self.ordinal(pci_address)?).map_err(|e| e.to_string())?;
        let stream = ctx.default_stream();
        let e = |what: &str, err: cudarc::driver::DriverError| format!("{what}: {err}");

        // Health check first: a broken GPU is not worth scrubbing for minutes.
        let n: u32 = 1 << 24;
        let module = ctx
            .load_module(cudarc::nvrtc::Ptx::from_src(CHECK_PTX))
            .map_err(|err| e("loading the check kernel", err))?;
        let f = module
            .load_function("vmcloud_check")
            .map_err(|err| e("loading the check kernel", err))?;
        let mut out = stream
            .alloc_zeros::<u32>(n as usize)
            .map_err(|err| e("allocating for the check", err))?;
        let mut launch = stream.launch_builder(&f);
        launch.arg(&mut out).arg(&n);
        // SAFETY: the kernel takes (u32 *out, u32 n) and writes out[0..n), which `out` holds.
        #[allow(unsafe_code)]
        unsafe { launch.launch(LaunchConfig::for_num_elems(n)) }
            .map_err(|err| e("running the check kernel", err))?;
        let got = stream
            .clone_dtoh(&out)
            .map_err(|err| e("reading the check's result", err))?;
        if let Some(i) = (0..n).find(|&i| got[i as usize] != check_value(i)) {
            return Err(format!(
                "the check kernel computed {:#x} at index {i}, expected {:#x}",
                got[i as usize],
                check_value(i)
            ));
        }
        // Bandwidth: copy 1 GiB device to device, timed with events.
        let words = (1usize << 30) / 4;
        let src = stream
            .alloc_zeros::<u32>(words)
            .map_err(|err| e("allocating for the bandwidth check", err))?;
        let mut dst = stream
            .alloc_zeros::<u32>(words)
            .map_err(|err| e("allocating for the bandwidth check", err))?;
        let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let t0 = ctx.new_event(timing).map_err(|err| e("timing", err))?;
        let t1 = ctx.new_event(timing).map_err(|err| e("timing", err))?;
        t0.record(&stream).map_err(|err| e("timing", err))?;
        stream
            .memcpy_dtod(&src, &mut dst)
            .map_err(|err| e("copying for the bandwidth check", err))?;
        t1.record(&stream).map_err(|err| e("timing", err))?;
        let ms = t0.elapsed_ms(&t1).map_err(|err| e("timing", err))?;
        let bandwidth_gbps = 2.0 * (words * 4) as f64 / (f64::from(ms) / 1e3) / 1e9;
        drop((out, src, dst));

        // Scrub: every chunk the driver gives us, written, read back, zeroed.
        let (_, total) = ctx.mem_get_info().map_err(|err| e("reading memory", err))?;
        let chunk_words = (256usize << 20) / 4;
        let pattern = vec![0xA5C3_5A3Cu32; chunk_words];
        let mut readback = vec![0u32; chunk_words];
        let mut chunks = Vec::new();
        while let Ok(mut chunk) = stream.alloc_zeros::<u32>(chunk_words) {
            stream
                .memcpy_htod(&pattern, &mut chunk)
                .map_err(|err| e("writing the scrub pattern", err))?;
            stream
                .memcpy_dtoh(&chunk, &mut readback)
                .map_err(|err| e("reading the scrub pattern back", err))?;
            if let Some(at) = readback.iter().position(|w| *w != pattern[0]) {
                return Err(format!(
                    "memory read back differs from what was written in chunk {} at word {at}",
                    chunks.len()
                ));
            }
            stream
                .memset_zeros(&mut chunk)
                .map_err(|err| e("zeroing", err))?;
            chunks.push(chunk);
        }
        stream.synchronize().map_err(|err| e("finishing", err))?;
        let scrubbed_mib = (chunks.len() * chunk_words * 4) as u64 >> 20;
        Ok(ScrubReport {
            pci_address: pci_address.to_owned(),
            scrubbed_mib,
            total_mib: total as u64 >> 20,
            bandwidth_gbps,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

impl GpuScrubber for Cuda {
    fn prepare(&self, pci_address: &str) -> Result<ScrubReport, ScrubError> {
        self.run(pci_address)
            .map_err(|reason| ScrubError::Unhealthy {
                pci_address: pci_address.to_owned(),
                reason,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values_are_what_the_kernel_computes() {
        // The PTX computes (i * -1640531535 as s32) ^ 0x12345678 on 32 bits.
        for i in [0u32, 1, 2, 1000, u32::MAX] {
            let signed = (i as i32).wrapping_mul(-1_640_531_535) as u32 ^ 305_419_896;
            assert_eq!(check_value(i), signed);
        }
        assert!(CHECK_PTX.contains(".entry vmcloud_check"));
    }

    /// Runs on a GPU machine; elsewhere records that it skipped and why.
    #[test]
    fn scrubs_and_checks_a_real_gpu() {
        const TEST: &str = "scrub::scrubs_and_checks_a_real_gpu";
        let cuda = match Cuda::load() {
            Ok(c) => c,
            Err(e) => {
                vmcloud_proto::testing::skip(TEST, &e.to_string());
                return;
            }
        };
        let report = crate::gpu::GpuInventory::read(&crate::gpu::Nvml::load());
        let Some(gpu) = report.gpus.first() else {
            vmcloud_proto::testing::skip(TEST, "CUDA loads but NVML lists no GPU");
            return;
        };
        let r = cuda.prepare(&gpu.pci_address).unwrap();
        eprintln!(
            "scrubbed {} of {} MiB on {} ({}), copy bandwidth {:.0} GB/s, {:.1} s",
            r.scrubbed_mib, r.total_mib, gpu.pci_address, gpu.name, r.bandwidth_gbps, r.seconds
        );
        assert!(r.scrubbed_mib * 10 >= r.total_mib * 8, "{r:?}");
        assert!(r.bandwidth_gbps > 10.0, "{r:?}");
        let err = cuda.prepare("0000:ff:1f.0").unwrap_err().to_string();
        assert!(err.contains("CUDA does not see it"), "{err}");
    }
}
