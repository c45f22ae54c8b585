//! AI batch jobs: what makes an instance a member of one.

use serde::{Deserialize, Serialize};
use vmcloud_proto::JobId;
use vmcloud_proto::pb;

/// Priority classes of AI batch jobs: a higher class is always served first.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum JobPriority {
    Low,
    #[default]
    Normal,
    High,
}

impl JobPriority {
    pub fn as_str(self) -> &'static str {
        match self {
            JobPriority::Low => "low",
            JobPriority::Normal => "normal",
            JobPriority::High => "high",
        }
    }
}

impl From<pb::JobPriority> for JobPriority {
    fn from(p: pb::JobPriority) -> Self {
        match p {
            pb::JobPriority::Low => JobPriority::Low,
            pb::JobPriority::Normal => JobPriority::Normal,
            pb::JobPriority::High => JobPriority::High,
        }
    }
}

/// What makes an instance a member of an AI batch job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub id: JobId,
    pub priority: JobPriority,
    pub max_runtime_s: u32,
    /// Members of the job; they start all together or not at all.
    pub gang_size: u32,
    pub member: u32,
}
