//! Notification channels. A channel needs its provider's credentials; without them it is
//! disabled, says so (health, the notification's error), and never pretends to have sent.

use uuid::Uuid;
use virel_domain::commands::notifications;
use virel_domain::jobs::{BoxFut, Notifier};
use virel_domain::{Db, DomainResult};

/// The configured channels (none yet: every channel is disabled).
#[derive(Clone, Debug, Default)]
pub struct Channels {}

impl Notifier for Channels {
    fn send(&self, db: &Db, id: Uuid) -> BoxFut<'_, DomainResult<()>> {
        let db = db.clone();
        Box::pin(async move { send(&db, id).await })
    }
}

/// Sends a queued notification, or records why it cannot be sent. A disabled channel is a
/// permanent failure: retrying cannot help, so it fails at once and tells an operator.
pub async fn send(db: &Db, id: Uuid) -> DomainResult<()> {
    let n = notifications::get(db, id).await?;
    if n.status != "queued" {
        return Ok(());
    }
    notifications::record_failure(db, id, &format!("channel {} is disabled: no provider configured", n.channel), true)
        .await
}
