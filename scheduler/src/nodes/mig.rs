//! Multi-Instance GPU (MIG): the profiles a GPU in MIG mode can be sliced into, where each
//! slice may sit, and the names of bound slices.
//!
//! NVIDIA's A100, H100 and H200 split into 8 memory slices and 7 compute slices. A GPU instance
//! of a profile takes a contiguous run of memory slices starting at one of the profile's
//! allowed positions, plus some compute slices; two instances never overlap and together
//! never take more than 7 compute slices (NVIDIA MIG user guide, "Supported MIG profiles").
//! Profile names follow NVIDIA's: `<compute>g.<memory>gb`, the memory being the GPU's share
//! (`1g.10gb` on an 80 GB H100, `1g.5gb` on a 40 GB A100).
//!
//! A bound slice is written `<pci address>/<profile>@<start>` (`0000:17:00.0/3g.40gb@4`) in an
//! instance's GPU list, so the GPU it lives on, its size and its place can be read back from
//! the replicated state alone. Pure: no I/O.

use std::collections::BTreeSet;

use vmcloud_proto::{GpuId, MigSliceId};

/// Model families with MIG.
pub const MIG_MODELS: &[&str] = &["A100", "H100", "H200"];

const MEMORY_SLICES: u8 = 8;
const COMPUTE_SLICES: u8 = 7;

/// One profile's geometry: compute slices, memory slices, allowed first memory slices.
struct Geometry {
    compute: u8,
    memory: u8,
    starts: &'static [u8],
}

const GEOMETRIES: &[Geometry] = &[
    Geometry {
        compute: 1,
        memory: 1,
        starts: &[0, 1, 2, 3, 4, 5, 6],
    },
    Geometry {
        compute: 1,
        memory: 2,
        starts: &[0, 2, 4, 6],
    },
    Geometry {
        compute: 2,
        memory: 2,
        starts: &[0, 2, 4],
    },
    Geometry {
        compute: 3,
        memory: 4,
        starts: &[0, 4],
    },
    Geometry {
        compute: 4,
        memory: 4,
        starts: &[0],
    },
    Geometry {
        compute: 7,
        memory: 8,
        starts: &[0],
    },
];

/// A profile as offered on one GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub compute: u8,
    pub memory: u8,
    starts: &'static [u8],
}

/// Whether GPUs of `model` can be sliced.
pub fn capable(model: &str) -> bool {
    MIG_MODELS.contains(&model)
}

/// The profiles a GPU of `model` with `memory_mib` offers (none without MIG).
pub fn profiles(model: &str, memory_mib: u64) -> Vec<Profile> {
    if !capable(model) {
        return Vec::new();
    }
    GEOMETRIES
        .iter()
        .map(|g| Profile {
            name: format!("{}g.{}gb", g.compute, share_gb(memory_mib, g)),
            compute: g.compute,
            memory: g.memory,
            starts: g.starts,
        })
        .collect()
}

/// A geometry's share of a GPU's memory in whole GB, as NVIDIA rounds it (141 GB × 4/8 → 71).
fn share_gb(memory_mib: u64, g: &Geometry) -> u64 {
    (memory_mib as f64 / 1024.0 * f64::from(g.memory) / f64::from(MEMORY_SLICES)).round() as u64
}

/// The profile `name` on a GPU of `model` with `memory_mib`. Allocates nothing unless found:
/// placement asks for it on every candidate GPU.
pub fn profile(model: &str, memory_mib: u64, name: &str) -> Option<Profile> {
    geometry(model, memory_mib, name).map(|g| Profile {
        name: name.to_owned(),
        compute: g.compute,
        memory: g.memory,
        starts: g.starts,
    })
}

fn geometry(model: &str, memory_mib: u64, name: &str) -> Option<&'static Geometry> {
    if !capable(model) {
        return None;
    }
    let (compute, gb) = name.strip_suffix("gb")?.split_once("g.")?;
    let (compute, gb): (u8, u64) = (compute.parse().ok()?, gb.parse().ok()?);
    GEOMETRIES
        .iter()
        .find(|g| g.compute == compute && share_gb(memory_mib, g) == gb)
}

/// Whether `name` has the shape of a profile name, for checking the catalog (which profiles a
/// GPU offers depends on its memory, known only when hosts register).
pub fn is_profile_name(name: &str) -> bool {
    let Some((g, gb)) = name.split_once("g.") else {
        return false;
    };
    let Some(gb) = gb.strip_suffix("gb") else {
        return false;
    };
    g.parse::<u8>()
        .is_ok_and(|g| GEOMETRIES.iter().any(|x| x.compute == g))
        && gb.parse::<u32>().is_ok_and(|gb| gb > 0)
}

/// What is taken on one GPU: memory slices (bit i = slice i) and compute slices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    memory: u8,
    compute: u8,
}

impl Layout {
    /// The layout of GPU `pci` (of `model`, `memory_mib`) given the bound slices; `None` when
    /// a binding names no profile of this GPU (state from another catalog) or slices overlap.
    pub fn of<'a>(
        model: &str,
        memory_mib: u64,
        pci: &GpuId,
        bound: impl IntoIterator<Item = &'a MigSliceId>,
    ) -> Option<Layout> {
        let mut layout = Layout::default();
        for s in bound {
            if &s.gpu != pci {
                continue;
            }
            let g = geometry(model, memory_mib, &s.profile)?;
            layout = layout.place(g.compute, g.memory, g.starts, s.start)?;
        }
        Some(layout)
    }

    /// This layout with a slice of `p` at `start`, if it is allowed there and free.
    pub fn with(self, p: &Profile, start: u8) -> Option<Layout> {
        self.place(p.compute, p.memory, p.starts, start)
    }

    fn place(self, compute: u8, memory: u8, starts: &[u8], start: u8) -> Option<Layout> {
        let mask = (((1u16 << memory) - 1) << start) as u8;
        let fits = starts.contains(&start)
            && start + memory <= MEMORY_SLICES
            && self.memory & mask == 0
            && self.compute + compute <= COMPUTE_SLICES;
        fits.then_some(Layout {
            memory: self.memory | mask,
            compute: self.compute + compute,
        })
    }

    /// The first position where a slice of `p` fits.
    pub fn first_fit(self, p: &Profile) -> Option<u8> {
        p.starts
            .iter()
            .copied()
            .find(|&s| self.with(p, s).is_some())
    }

    /// Compute slices still free.
    pub fn free_compute(self) -> u8 {
        COMPUTE_SLICES - self.compute
    }

    pub fn is_empty(self) -> bool {
        self.compute == 0
    }
}

/// The slices of `bound` that live on GPU `pci`.
pub fn slices_on<'a>(
    bound: &'a BTreeSet<MigSliceId>,
    pci: &'a GpuId,
) -> impl Iterator<Item = &'a MigSliceId> {
    use std::ops::Bound;
    // Slices sort by GPU first, so a GPU's slices follow the smallest slice of it.
    let first = MigSliceId {
        gpu: pci.clone(),
        profile: String::new(),
        start: 0,
    };
    bound
        .range((Bound::Included(first), Bound::Unbounded))
        .take_while(move |s| &s.gpu == pci)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmcloud_proto::GpuBinding;

    #[test]
    fn profile_names_follow_the_gpu_memory() {
        let names = |model, gib: u64| -> Vec<String> {
            profiles(model, gib * 1024)
                .into_iter()
                .map(|p| p.name)
                .collect()
        };
        assert_eq!(
            names("H100", 80),
            [
                "1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"
            ]
        );
        assert_eq!(
            names("A100", 40),
            [
                "1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"
            ]
        );
        assert_eq!(
            names("H200", 141),
            [
                "1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"
            ]
        );
        assert!(names("L40S", 48).is_empty());
    }

    /// Table: (slices already bound, profile asked, first fit).
    #[test]
    fn slices_go_where_nvidia_allows_and_never_overlap() {
        type Case = (&'static [(&'static str, u8)], &'static str, Option<u8>);
        let cases: &[Case] = &[
            (&[], "7g.80gb", Some(0)),
            (&[("1g.10gb", 0)], "7g.80gb", None),
            (&[("1g.10gb", 0)], "3g.40gb", Some(4)),
            (&[("1g.10gb", 0), ("1g.10gb", 4)], "3g.40gb", None),
            (&[("3g.40gb", 0), ("3g.40gb", 4)], "1g.10gb", None), // 6 of 7 compute left 1, but no memory
            (&[("4g.40gb", 0)], "3g.40gb", Some(4)),
            (&[("4g.40gb", 0), ("3g.40gb", 4)], "1g.10gb", None),
            (
                &[("2g.20gb", 0), ("2g.20gb", 2), ("2g.20gb", 4)],
                "1g.10gb",
                Some(6),
            ),
            (
                &[
                    ("1g.10gb", 0),
                    ("1g.10gb", 1),
                    ("1g.10gb", 2),
                    ("1g.10gb", 3),
                    ("1g.10gb", 4),
                    ("1g.10gb", 5),
                    ("1g.10gb", 6),
                ],
                "1g.10gb",
                None, // slice 7 is never a 1g.10gb's
            ),
            (&[("1g.20gb", 6)], "4g.40gb", Some(0)),
        ];
        let gpu = GpuId::parse("0000:17:00.0").unwrap();
        let slice = |profile: &str, start: u8| MigSliceId {
            gpu: gpu.clone(),
            profile: profile.into(),
            start,
        };
        for (bound, asked, want) in cases {
            let bound: Vec<MigSliceId> = bound.iter().map(|(p, s)| slice(p, *s)).collect();
            let layout = Layout::of("H100", 81920, &gpu, &bound).unwrap();
            let p = profile("H100", 81920, asked).unwrap();
            assert_eq!(layout.first_fit(&p), *want, "{bound:?} + {asked}");
        }
        // Overlapping bindings are not a layout.
        let twice = vec![slice("2g.20gb", 0), slice("1g.10gb", 1)];
        assert_eq!(Layout::of("H100", 81920, &gpu, &twice), None);
    }

    #[test]
    fn slice_names_round_trip_and_profile_names_are_checked() {
        let name = "0000:17:00.0/3g.40gb@4";
        let slice = MigSliceId::parse(name).unwrap();
        assert_eq!(
            slice,
            MigSliceId {
                gpu: GpuId::parse("0000:17:00.0").unwrap(),
                profile: "3g.40gb".into(),
                start: 4
            }
        );
        assert_eq!(slice.to_string(), name);
        assert!(matches!(GpuBinding::parse(name), Ok(GpuBinding::Slice(_))));
        assert!(matches!(
            GpuBinding::parse("0000:17:00.0"),
            Ok(GpuBinding::Whole(_))
        ));
        assert!(GpuBinding::parse("0000:17:00.0/3g.40gb").is_err());
        for ok in ["1g.10gb", "7g.80gb", "3g.71gb"] {
            assert!(is_profile_name(ok), "{ok}");
        }
        for bad in ["5g.10gb", "1g10gb", "1g.gb", "1g.10", "h100"] {
            assert!(!is_profile_name(bad), "{bad}");
        }
    }
}
