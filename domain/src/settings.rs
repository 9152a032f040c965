//! The domain's settings: read once by the binary (its `Config`) and handed down with the
//! `Db`, so no domain code reads the environment.

/// Settings the domain commands consult.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The agency's IANA time zone: the default business-hours calendar's.
    pub timezone: String,
    /// Open items an operator may hold before round-robin assignment passes them over.
    pub max_open_items_per_operator: i64,
    /// The ISO 4217 currencies the agency accepts (`VIREL_CURRENCIES`).
    pub currencies: Vec<String>,
    /// Minutes kept free before and after each booking for travel (availability, matching).
    pub travel_buffer_minutes: i64,
    /// How many weeks ahead the scheduler expands availability rules into slots.
    pub availability_weeks: i64,
    /// `VIREL_WEBHOOK_ALLOW_PRIVATE`: outgoing webhooks may target loopback and private
    /// addresses (tests, on-premises installs); the metadata address stays refused.
    pub webhook_allow_private: bool,
    /// The order notifications fall back along when a channel is disabled or refuses
    /// (`telegram`, `sms`, `email`; `telegram` is the bot of the recipient's audience).
    pub notify_fallback: Vec<String>,
    /// `VIREL_AUTOMATION_CASCADE_BUDGET`: how many events two or more automation hops deep
    /// the system may make in a minute while they still run rules.
    pub cascade_budget_per_minute: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            timezone: "Europe/London".into(),
            max_open_items_per_operator: 25,
            currencies: crate::validate::DEFAULT_CURRENCIES.iter().map(|c| c.to_string()).collect(),
            travel_buffer_minutes: 30,
            availability_weeks: 8,
            webhook_allow_private: false,
            notify_fallback: vec!["telegram".into(), "sms".into(), "email".into()],
            cascade_budget_per_minute: crate::automation::engine::CASCADE_BUDGET_PER_MINUTE,
        }
    }
}
