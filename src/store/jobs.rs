//! The outbox: jobs claimed with a lease, run in order per contact and lane, retried with
//! backoff, and marked `failed` for good when they cannot succeed (DESIGN.md "Flow" 2, 3).

use crate::relay::ids::{BridgeMessageId, ContactId};
use crate::relay::message::Contact;

use super::MessageRecord;

/// Which way a job sends. Order is kept per contact *and* lane, so a customer whose replies are
/// stuck (WeChat down) still reaches the agents, and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Towards the platform (Vonage).
    Platform,
    /// Towards the channel (WeChat).
    Channel,
}

impl Lane {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Lane::Platform => "platform",
            Lane::Channel => "channel",
        }
    }
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Post an inbound channel message into the contact's platform conversation.
    DeliverInbound,
    /// Send an outbound platform message to the contact on the channel.
    DeliverOutbound,
    /// Report an outbound message's outcome back into its platform conversation.
    ReportStatus,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::DeliverInbound => "deliver_inbound",
            JobKind::DeliverOutbound => "deliver_outbound",
            JobKind::ReportStatus => "report_status",
        }
    }

    pub fn lane(self) -> Lane {
        match self {
            JobKind::DeliverInbound | JobKind::ReportStatus => Lane::Platform,
            JobKind::DeliverOutbound => Lane::Channel,
        }
    }

    /// Whether the job's outcome is its message's status (a status report's is not).
    pub(super) fn decides_message_status(self) -> bool {
        !matches!(self, JobKind::ReportStatus)
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        [JobKind::DeliverInbound, JobKind::DeliverOutbound, JobKind::ReportStatus].into_iter().find(|k| k.as_str() == s)
    }
}

/// A job this worker holds until `lease` ends, with what it needs to run: its message and
/// contact as of the claim (read with the claim, a few statements per batch instead of three
/// reads per job). A contact's jobs run one at a time per lane, so nothing of its own lane changed
/// the contact since.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    pub id: i64,
    pub message_id: BridgeMessageId,
    pub contact_id: ContactId,
    pub kind: JobKind,
    /// Attempts including this one.
    pub attempt: u32,
    pub message: MessageRecord,
    pub contact: Contact,
    pub(super) claim_token: String,
}

impl ClaimedJob {
    /// What the outcome's writes need to find the job (and nothing of its data).
    pub(super) fn key(&self) -> JobKey {
        JobKey {
            id: self.id,
            message_id: self.message_id.clone(),
            contact_id: self.contact_id,
            kind: self.kind,
            claim_token: self.claim_token.clone(),
        }
    }
}

/// A claimed job as its outcome's writes name it.
#[derive(Debug, Clone)]
pub(super) struct JobKey {
    pub id: i64,
    pub message_id: BridgeMessageId,
    pub contact_id: ContactId,
    pub kind: JobKind,
    pub claim_token: String,
}
