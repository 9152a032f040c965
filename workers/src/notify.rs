//! Notification channels. A channel needs its provider's credentials; without them it is
//! disabled, says so (health, the notification's error), and never pretends to have sent.

use uuid::Uuid;
use virel_domain::commands::notifications;
use virel_domain::{Db, DomainResult};

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
