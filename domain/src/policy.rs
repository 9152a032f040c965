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
            Role::ContentManager => &[ModelsRead, ModelsWrite, ModelsMedia],
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

/// `+447700900123` → `+44 7*** ***123`: the country code and the last three digits stay.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() <= 3 {
        return "*".repeat(digits.len());
    }
    let last: String = digits[digits.len() - 3..].iter().collect();
    if phone.trim_start().starts_with('+') && digits.len() > 6 {
        let cc: String = digits[..2].iter().collect();
        format!("+{cc} {}*** ***{last}", digits[2])
    } else {
        format!("*** ***{last}")
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
        assert_eq!(mask_email("jane@example.com"), "j***@example.com");
        assert_eq!(mask_telegram("@handle"), "@ha***");
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
}
