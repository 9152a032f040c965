//! Roles, permissions and PII masking: the one place where a role maps to what it may do.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Owner,
    OpsManager,
    Operator,
    ContentManager,
    Finance,
}

pub const ALL_ROLES: [Role; 5] = [Role::Owner, Role::OpsManager, Role::Operator, Role::ContentManager, Role::Finance];

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "OWNER",
            Role::OpsManager => "OPS_MANAGER",
            Role::Operator => "OPERATOR",
            Role::ContentManager => "CONTENT_MANAGER",
            Role::Finance => "FINANCE",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        ALL_ROLES.into_iter().find(|r| r.as_str() == s)
    }

    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Owner => ALL_PERMISSIONS,
            Role::OpsManager => &[
                ClientsRead,
                ClientsWrite,
                ClientsPii,
                ClientsBlock,
                ModelsRead,
                ModelsWrite,
                ModelsAvailability,
                InquiriesRead,
                InquiriesWrite,
                BookingsRead,
                BookingsWrite,
                BookingsOverride,
                TasksRead,
                TasksWrite,
                TasksAll,
                ExceptionsRead,
                ExceptionsWrite,
                ExceptionsAll,
                NotesWrite,
                PaymentsRead,
                ReportsRead,
                AutomationRead,
                AutomationWrite,
                AuditRead,
                SystemRead,
                SystemManage,
                ActionCenterRead,
                UsersRead,
            ],
            Role::Operator => &[
                ActionCenterRead,
                TasksRead,
                TasksWrite,
                ExceptionsRead,
                ExceptionsWrite,
                InquiriesRead,
                InquiriesWrite,
                BookingsRead,
                BookingsWrite,
                ClientsRead,
                ModelsRead,
                NotesWrite,
            ],
            Role::ContentManager => &[ModelsRead, ModelsWrite, ModelsMedia, ModelsAvailability],
            // Tasks: finance works the refund reviews assigned to it.
            Role::Finance => &[
                PaymentsRead,
                PaymentsWrite,
                PaymentsRefund,
                ReportsRead,
                BookingsRead,
                ClientsRead,
                TasksRead,
                TasksWrite,
            ],
        }
    }

    pub fn can(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }
}

macro_rules! permissions {
    ($($v:ident = $s:literal),* $(,)?) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Permission { $($v),* }
        pub const ALL_PERMISSIONS: &[Permission] = &[$(Permission::$v),*];
        impl Permission {
            pub fn as_str(self) -> &'static str { match self { $(Permission::$v => $s),* } }
        }
    };
}

permissions! {
    UsersManage = "users:manage",
    UsersRead = "users:read",
    ClientsRead = "clients:read",
    ClientsWrite = "clients:write",
    ClientsPii = "clients:pii",
    ClientsBlock = "clients:block",
    ModelsRead = "models:read",
    ModelsWrite = "models:write",
    ModelsMedia = "models:media",
    ModelsAvailability = "models:availability",
    InquiriesRead = "inquiries:read",
    InquiriesWrite = "inquiries:write",
    BookingsRead = "bookings:read",
    BookingsWrite = "bookings:write",
    BookingsOverride = "bookings:override",
    TasksRead = "tasks:read",
    TasksWrite = "tasks:write",
    TasksAll = "tasks:all",
    ExceptionsRead = "exceptions:read",
    ExceptionsWrite = "exceptions:write",
    ExceptionsAll = "exceptions:all",
    NotesWrite = "notes:write",
    PaymentsRead = "payments:read",
    PaymentsWrite = "payments:write",
    PaymentsRefund = "payments:refund",
    ReportsRead = "reports:read",
    AutomationRead = "automation:read",
    AutomationWrite = "automation:write",
    AuditRead = "audit:read",
    SystemRead = "system:read",
    SystemManage = "system:manage",
    ActionCenterRead = "action_center:read",
}

/// Masks a phone number for callers without `clients:pii`: the country code and the last
/// three digits of the national number stay, nothing of an area code ever shows.
///
/// The number is parsed as E.164 with `phonenumber` and shown as `+CC D*** ***NNN`:
/// - `CC` is the country calling code, `NNN` the last three digits of the national number;
///   the stars are always `*** ***`, whatever the length, so the length does not show either;
/// - `D` is the first digit of the national number only when that digit says "mobile" and
///   nothing about a place: the number is a mobile number by the country's numbering plan, or
///   (for a number the plan does not list, like Ofcom's drama range `07700 900xxx`) its first
///   digit is that of the country's mobile numbers and not that of its fixed lines. Otherwise
///   (fixed lines, the North American plan where mobiles share area codes, anything else)
///   `D` is a star as well.
///
/// | number            | masked            |
/// |-------------------|-------------------|
/// | `+447700900123`   | `+44 7*** ***123` |
/// | `+442079460123`   | `+44 **** ***123` |
/// | `+15551234567`    | `+1 **** ***567`  |
/// | `+4915123456789`  | `+49 1*** ***789` |
///
/// A number that does not parse as E.164 keeps only its last three digits: `*** ***123`
/// (all stars when it has three digits or fewer).
pub fn mask_phone(phone: &str) -> String {
    let Ok(number) = phonenumber::parse(None, phone) else {
        let digits: Vec<char> = phone.chars().filter(|c| c.is_ascii_digit()).collect();
        if digits.len() <= 3 {
            return "*".repeat(digits.len());
        }
        let last: String = digits[digits.len() - 3..].iter().collect();
        return format!("*** ***{last}");
    };
    let cc = number.code().value();
    let national = format!("{}{}", "0".repeat(usize::from(number.national().zeros())), number.national().value());
    if national.len() <= 3 {
        return format!("+{cc} ***");
    }
    let last = &national[national.len() - 3..];
    let lead =
        if national.len() >= 7 && leading_digit_is_mobile_only(&number, &national) { &national[..1] } else { "*" };
    format!("+{cc} {lead}*** ***{last}")
}

/// Whether the first digit of `national` tells only that the number is a mobile one (see
/// [`mask_phone`]).
fn leading_digit_is_mobile_only(number: &phonenumber::PhoneNumber, national: &str) -> bool {
    use phonenumber::metadata::DATABASE;
    match number.number_type(&DATABASE) {
        phonenumber::Type::Mobile => true,
        phonenumber::Type::Unknown => {
            // Not listed in any region's plan, so no region is known: the main one of the code.
            let regions = DATABASE.by_code(&number.code().value()).unwrap_or_default();
            let Some(meta) = regions.iter().find(|m| m.is_main_country_for_code()).or(regions.first()) else {
                return false;
            };
            let first = |d: Option<&phonenumber::metadata::Descriptor>| {
                d.and_then(|d| d.example()).and_then(|e| e.chars().next())
            };
            let lead = national.chars().next();
            let (mobile, fixed) = (first(meta.descriptors().mobile()), first(meta.descriptors().fixed_line()));
            mobile.is_some() && mobile == lead && fixed != lead
        }
        _ => false,
    }
}

/// `jane@example.com` → `j***@example.com`.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_string(),
    }
}

/// `@handle` → `@ha***`: the first two letters of the handle stay.
pub fn mask_telegram(handle: &str) -> String {
    let (at, rest) = match handle.strip_prefix('@') {
        Some(r) => ("@", r),
        None => ("", handle),
    };
    let first: String = rest.chars().take(2).collect();
    format!("{at}{first}***")
}

/// Masks contact fields anywhere in a JSON document (audit diffs, event payloads).
pub fn mask_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if let serde_json::Value::String(s) = val {
                    if k == "phone" || k.ends_with("_phone") {
                        *s = mask_phone(s);
                        continue;
                    }
                    if k == "email" || k.ends_with("_email") {
                        *s = mask_email(s);
                        continue;
                    }
                    if k == "telegram" || k.ends_with("_telegram") {
                        *s = mask_telegram(s);
                        continue;
                    }
                }
                mask_json(val);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_as_the_spec_shows() {
        assert_eq!(mask_phone("+447700900123"), "+44 7*** ***123");
        assert_eq!(mask_phone("+15551234567"), "+1 **** ***567");
        assert_eq!(mask_email("jane@example.com"), "j***@example.com");
        assert_eq!(mask_telegram("@handle"), "@ha***");
    }

    /// The country code and the last three digits of the national number, and never a digit
    /// of an area code.
    #[test]
    fn phone_masks_by_country() {
        let cases = [
            // US: area codes and mobiles share the first digit, which never shows.
            ("+15551234567", "+1 **** ***567", "555"),
            ("+1 (202) 555-0123", "+1 **** ***123", "202"),
            // UK mobile (Ofcom's drama range, which the plan does not list, and a listed one).
            ("+447700900123", "+44 7*** ***123", "7700"),
            ("+44 7911 123456", "+44 7*** ***456", "7911"),
            // UK landline (London 20): nothing of the area code.
            ("+442079460123", "+44 **** ***123", "20"),
            // Germany: mobile (15x) and Berlin (30).
            ("+4915123456789", "+49 1*** ***789", "151"),
            ("+49301234567", "+49 **** ***567", "30"),
            // France: mobile (6) and Paris (1).
            ("+33612345678", "+33 6*** ***678", "61"),
            ("+33142685300", "+33 **** ***300", "142"),
            // Russia: mobile (9) and Moscow (495).
            ("+79123456789", "+7 9*** ***789", "912"),
            ("+74951234567", "+7 **** ***567", "495"),
            // Italy keeps the leading zero of its landlines in the national number.
            ("+390612345678", "+39 **** ***678", "06"),
            // Not E.164 (no country code): only the last three digits.
            ("07700 900123", "*** ***123", "7700"),
            ("+999 1234", "*** ***234", "999"),
            ("555-0123", "*** ***123", "555"),
            ("12", "**", "12"),
            ("", "", "x"),
        ];
        for (raw, masked, hidden) in cases {
            let got = mask_phone(raw);
            assert_eq!(got, masked, "{raw}");
            assert!(!got.contains(hidden), "{raw} -> {got} shows {hidden}");
        }
    }

    #[test]
    fn finance_and_operator_lack_pii() {
        for r in ALL_ROLES {
            let pii = r.can(Permission::ClientsPii);
            assert_eq!(pii, matches!(r, Role::Owner | Role::OpsManager), "{r:?}");
        }
        assert!(!Role::Finance.can(Permission::BookingsWrite));
        assert!(Role::Finance.can(Permission::BookingsRead));
        assert!(!Role::ContentManager.can(Permission::ClientsRead));
        assert!(!Role::OpsManager.can(Permission::UsersManage));
        assert!(!Role::OpsManager.can(Permission::PaymentsRefund));
    }

    #[test]
    fn availability_is_edited_by_content_ops_and_owner_and_read_by_operators() {
        for r in ALL_ROLES {
            let edits = r.can(Permission::ModelsAvailability);
            assert_eq!(edits, matches!(r, Role::Owner | Role::OpsManager | Role::ContentManager), "{r:?}");
        }
        assert!(Role::Operator.can(Permission::ModelsRead));
    }
}
