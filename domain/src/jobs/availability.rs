//! The availability job: expands models' rules into `availability_slots` up to the configured
//! horizon (`VIREL_AVAILABILITY_WEEKS`), scheduled every ten minutes; with `model_id`, rewrites
//! that model's slots from her rules.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::kind::{JobCx, JobError, JobKind, Queue};

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AvailabilityExpand {
    #[serde(default)]
    pub model_id: Option<Uuid>,
}

impl JobKind for AvailabilityExpand {
    const NAME: &'static str = "availability_expand";
    const QUEUE: Queue = Queue::Heavy;

    async fn run(self, cx: JobCx) -> Result<(), JobError> {
        let out = crate::availability::expand_due(&cx.db, self.model_id).await?;
        if out.models > 0 {
            tracing::info!(models = out.models, slots = out.slots, purged = out.purged, "availability expanded");
        }
        Ok(())
    }
}
