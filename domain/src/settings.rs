//! The domain's settings: read once by the binary (its `Config`) and handed down with the
//! `Db`, so no domain code reads the environment.

/// Settings the domain commands consult.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The agency's IANA time zone: the default business-hours calendar's.
    pub timezone: String,
    /// Open items an operator may hold before round-robin assignment passes them over.
    pub max_open_items_per_operator: i64,
    /// The order notifications fall back along when a channel is disabled or refuses
    /// (`telegram`, `sms`, `email`; `telegram` is the bot of the recipient's audience).
    pub notify_fallback: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timezone: "Europe/London".into(),
            max_open_items_per_operator: 25,
            notify_fallback: vec!["telegram".into(), "sms".into(), "email".into()],
        }
    }
}
