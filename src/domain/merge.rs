//! Account merge (Sunbird's `UserMergeActor`) as a persisted saga: the `merge` row of a mergee
//! records the step reached, each step commits its writes together with the next step, so a
//! merge interrupted anywhere resumes from its row and a replayed step changes nothing.

use serde::{Deserialize, Serialize};

/// The steps, in order; a saga row names the last one done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MergeStep {
    /// Both accounts locked, the saga recorded (the request's own commit).
    Locked,
    /// The mergee's email and phone moved to `prevUsed*`, its identifiers emptied and their
    /// uniqueness claims freed.
    IdentifiersMoved,
    /// The mergee is inactive and deleted (merged), its password gone.
    Marked,
    /// Every session of the mergee ended.
    SessionsEnded,
    /// The `user.merged` event is in the outbox.
    EventEmitted,
    /// The merger's notice is queued.
    NoticeQueued,
    /// The locks are released.
    Done,
}

impl MergeStep {
    pub const ALL: [MergeStep; 7] = [
        MergeStep::Locked,
        MergeStep::IdentifiersMoved,
        MergeStep::Marked,
        MergeStep::SessionsEnded,
        MergeStep::EventEmitted,
        MergeStep::NoticeQueued,
        MergeStep::Done,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MergeStep::Locked => "locked",
            MergeStep::IdentifiersMoved => "identifiersMoved",
            MergeStep::Marked => "marked",
            MergeStep::SessionsEnded => "sessionsEnded",
            MergeStep::EventEmitted => "eventEmitted",
            MergeStep::NoticeQueued => "noticeQueued",
            MergeStep::Done => "done",
        }
    }

    pub fn from_name(name: &str) -> Option<MergeStep> {
        MergeStep::ALL.into_iter().find(|step| step.name() == name)
    }

    /// The step after this one (`None` after `Done`).
    pub fn next(self) -> Option<MergeStep> {
        MergeStep::ALL
            .into_iter()
            .skip_while(|step| *step != self)
            .nth(1)
    }
}

/// The `merge` row `saga␟<fromAccountId>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MergeSaga {
    pub from_account_id: String,
    pub to_account_id: String,
    pub step: MergeStep,
    pub created_ms: i64,
    #[serde(default)]
    pub updated_ms: i64,
    /// Who asked (the merger), for the audit trail.
    #[serde(default)]
    pub requested_by: String,
}

crate::domain::plain_record!(MergeSaga);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_follow_each_other_and_keep_their_names() {
        assert_eq!(MergeStep::Locked.next(), Some(MergeStep::IdentifiersMoved));
        assert_eq!(MergeStep::NoticeQueued.next(), Some(MergeStep::Done));
        assert_eq!(MergeStep::Done.next(), None);
        for step in MergeStep::ALL {
            assert_eq!(MergeStep::from_name(step.name()), Some(step));
        }
    }
}
