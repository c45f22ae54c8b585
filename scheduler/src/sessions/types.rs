//! Cloud-gaming sessions: a gamer's GPU VM running a streaming server, launched from the
//! portal, one at a time per project (invariant 7), ended at its tier's maximum length.
//!
//! **Launch queues**: one per region and GPU class (model and pool). A launch that cannot start
//! waits there; VIP launches are served before Priority+ ones, Priority+ before standard, and
//! launches of one tier in the order they came. Placement serves them in that order (see
//! [`launch_rank`]). **Position and estimate**: [`standings`] walks each queue against the
//! GPUs of its region over time: free now, plus what running sessions, jobs and reclaimed spot
//! give back when they end (every session has a known latest end, its tier's length).
//! Pure functions of the state, like placement.

use serde::{Deserialize, Serialize};
use vmcloud_proto::pb;

/// The image every session boots: the game-streaming server.
pub const SESSION_IMAGE: &str = "game-streaming";

/// Gamers' subscription tiers.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum SessionTier {
    #[default]
    Standard,
    PriorityPlus,
    Vip,
}

impl SessionTier {
    pub const ALL: [SessionTier; 3] = [
        SessionTier::Standard,
        SessionTier::PriorityPlus,
        SessionTier::Vip,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionTier::Standard => "standard",
            SessionTier::PriorityPlus => "priority-plus",
            SessionTier::Vip => "vip",
        }
    }

    pub fn parse(s: &str) -> Option<SessionTier> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// How long one session may last: 1 h standard, 6 h Priority+, 8 h VIP (the shape of
    /// GeForce NOW's free, Priority and Ultimate tiers).
    pub fn max_length_s(self) -> u32 {
        match self {
            SessionTier::Standard => 3600,
            SessionTier::PriorityPlus => 6 * 3600,
            SessionTier::Vip => 8 * 3600,
        }
    }
}

impl From<pb::SessionTier> for SessionTier {
    fn from(t: pb::SessionTier) -> Self {
        match t {
            pb::SessionTier::Standard => SessionTier::Standard,
            pb::SessionTier::PriorityPlus => SessionTier::PriorityPlus,
            pb::SessionTier::Vip => SessionTier::Vip,
        }
    }
}

impl From<SessionTier> for pb::SessionTier {
    fn from(t: SessionTier) -> Self {
        match t {
            SessionTier::Standard => pb::SessionTier::Standard,
            SessionTier::PriorityPlus => pb::SessionTier::PriorityPlus,
            SessionTier::Vip => pb::SessionTier::Vip,
        }
    }
}

/// What makes an instance a game session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSpec {
    pub tier: SessionTier,
    pub title: String,
    /// Round trip from the gamer to the chosen region, when the launch gave a latency target.
    #[serde(default)]
    pub rtt_ms: Option<u32>,
    /// The household profile playing (see [`crate::gaming`]).
    #[serde(default)]
    pub profile: Option<String>,
    /// A household's session: how long it may last (its plan's cap, the hours left, a kid's
    /// minutes left today), instead of its tier's length.
    #[serde(default)]
    pub max_length_s: Option<u32>,
    /// One-time tokens of its connection details (the newest few).
    #[serde(default)]
    pub stream_tokens: Vec<StreamToken>,
    /// Share-Play: the host's open invite and the friend playing along.
    #[serde(default)]
    pub share: SharePlay,
    /// The partner site (`partner/site`) whose seat it uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

/// A session's Share-Play (DESIGN.md §8 "Gaming"): one invite open at a time, one guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharePlay {
    /// The open invite: its code's SHA-256 (hex, the key of
    /// [`crate::gaming::types::GamingBook::invites`]) and when it expires.
    pub invite: Option<(String, i64)>,
    pub guest: Option<ShareGuest>,
}

/// A household profile playing along in someone else's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareGuest {
    pub org: vmcloud_proto::OrgId,
    /// The guest household's project (its sessions' and its one-session rule's).
    pub project: vmcloud_proto::ProjectId,
    pub profile: String,
    /// The profile's name, shown to the host.
    pub name: String,
    pub joined_at_ms: i64,
    /// When the guest's play ends at the latest: 60 minutes after joining, or sooner (the
    /// session's own end, a kid's minutes or hours).
    pub until_ms: i64,
}

/// Longest a Share-Play guest plays.
pub const SHARE_PLAY_MS: i64 = 60 * 60_000;

/// How long a Share-Play invite's code holds.
pub const SHARE_INVITE_MS: i64 = 10 * 60_000;

/// A one-time token the streaming server takes once, before it expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamToken {
    pub sha256: Vec<u8>,
    pub expires_at_ms: i64,
    pub used_at_ms: Option<i64>,
    /// The Share-Play guest's (ended with the guest's play).
    #[serde(default)]
    pub guest: bool,
}

/// How long connection details hold.
pub const STREAM_TOKEN_MS: i64 = 60_000;

/// The port the streaming server answers on, on the session's host.
pub const STREAM_PORT: u16 = 47998;

impl SessionSpec {
    /// How long it may last once placed.
    pub fn max_length_s(&self) -> u32 {
        self.max_length_s
            .unwrap_or_else(|| self.tier.max_length_s())
    }
}

/// A launch's latency target: the round trips the gamer's client measured to each region's
/// beacon, and the most it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyTarget {
    pub max_ms: u32,
    pub rtt_ms: Vec<(String, u32)>,
}
