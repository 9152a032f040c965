//! Demo data (SPEC §1): the eight demo users, a few models, clients, inquiries, bookings,
//! tasks and an exception. Idempotent: a database that has the demo owner is left alone.
//! Everything goes through the domain commands, so the demo data is audited like real data.

use chrono::Duration;
use serde_json::json;

use crate::availability::rules::DAYS;
use crate::availability::{self, Rules, WeeklyWindow};
use crate::commands::bookings::{self, BookingTransition, NewBooking};
use crate::commands::clients::{self, NewClient};
use crate::commands::exceptions::{self, NewException};
use crate::commands::inquiries::{self, NewInquiry};
use crate::commands::models::{self, NewModel, Rate};
use crate::commands::tasks::{self, NewTask};
use crate::commands::{Money, users};
use crate::error::DomainResult;
use crate::policy::{ALL_PERMISSIONS, ALL_ROLES, Role};
use crate::store::Db;
use crate::{Ctx, now, q_exec};

pub const DEMO_PASSWORD: &str = "password123";

pub const DEMO_USERS: &[(&str, &str, Role)] = &[
    ("admin@virel.com", "Alex Admin", Role::Owner),
    ("tommy@virel.com", "Tommy Shelby", Role::OpsManager),
    ("lukas@virel.com", "Lukas Berg", Role::Operator),
    ("sasha@virel.com", "Sasha Ivanova", Role::Operator),
    ("adam@virel.com", "Adam Novak", Role::Operator),
    ("donald@virel.com", "Donald Reed", Role::Operator),
    ("content@virel.com", "Carla Content", Role::ContentManager),
    ("finance@virel.com", "Fiona Finance", Role::Finance),
];

/// Writes the role → permission table of the policy module into `roles`, `permissions` and
/// `role_permissions`, for reports and SQL users (the code's table stays the authority), and
/// installs the default SLA policies and automation rules when absent.
pub async fn sync_policy(db: &Db) -> DomainResult<()> {
    let mut tx = db.begin().await?;
    let mut conn = tx.conn();
    q_exec!(&mut conn, "DELETE FROM role_permissions")?;
    for p in ALL_PERMISSIONS {
        q_exec!(&mut conn, "INSERT INTO permissions (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", p.as_str())?;
    }
    for r in ALL_ROLES {
        q_exec!(&mut conn, "INSERT INTO roles (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", r.as_str())?;
        for p in r.permissions() {
            q_exec!(
                &mut conn,
                "INSERT INTO role_permissions (role, permission) VALUES ($1, $2)",
                r.as_str(),
                p.as_str()
            )?;
        }
    }
    tx.commit().await?;
    crate::sla::seed_defaults(db).await?;
    crate::automation::seed_defaults(db).await?;
    Ok(())
}

/// The shortest password accepted for the first OWNER.
pub const MIN_OWNER_PASSWORD_CHARS: usize = 12;

#[derive(sqlx::FromRow)]
struct CountRow {
    n: i64,
}

/// Creates the first OWNER (a real deployment's, from its settings) when no user exists at
/// all; returns whether it did. A database that has any user is left alone, so restarting
/// with the settings still present changes nothing (nor a password changed since).
pub async fn ensure_owner(db: &Db, email: &str, password: &str) -> DomainResult<bool> {
    if password.chars().count() < MIN_OWNER_PASSWORD_CHARS {
        return Err(crate::validate::refuse(
            "password",
            format!("the first owner's password must be at least {MIN_OWNER_PASSWORD_CHARS} characters"),
        ));
    }
    if any_user(db).await? {
        return Ok(false);
    }
    sync_policy(db).await?;
    let hash = users::hash_password(password)?;
    let mut tx = db.begin().await?;
    // Processes starting together (api and workers) queue here; the second finds the owner.
    tx.lock_key("virel-first-owner").await?;
    let existing = crate::q_opt!(&mut tx.conn(), CountRow, "SELECT COUNT(*) AS n FROM users")?.map_or(0, |r| r.n);
    if existing > 0 {
        return Ok(false);
    }
    let local = email.split('@').next().unwrap_or("Owner");
    let name = if local.is_empty() { "Owner" } else { local };
    users::insert_hashed(&mut tx.conn(), &Ctx::system(), email, name, Role::Owner, &hash).await?;
    tx.commit().await?;
    Ok(true)
}

/// Whether anyone can log in with a demo account's known password (the demo data is served):
/// the demo owner exists, is active and still has the demo password.
pub async fn demo_login_active(db: &Db) -> DomainResult<bool> {
    match users::find_by_email(&mut db.acquire().await?.conn(), DEMO_USERS[0].0).await? {
        Some(u) if u.active => {
            let hash = u.password_hash.clone();
            Ok(tokio::task::spawn_blocking(move || users::verify_password(DEMO_PASSWORD, &hash)).await.unwrap_or(true))
        }
        _ => Ok(false),
    }
}

/// Whether any user exists (a deployment without one has no way in).
pub async fn any_user(db: &Db) -> DomainResult<bool> {
    Ok(crate::q_opt!(&mut db.acquire().await?.conn(), CountRow, "SELECT COUNT(*) AS n FROM users")?
        .is_some_and(|r| r.n > 0))
}

/// Seeds the demo data when absent; returns whether it wrote anything.
pub async fn seed_demo(db: &Db) -> DomainResult<bool> {
    sync_policy(db).await?;
    let ctx = Ctx::system();
    if users::find_by_email(&mut db.acquire().await?.conn(), DEMO_USERS[0].0).await?.is_some() {
        return Ok(false);
    }
    // One hash for the shared demo password: argon2id is deliberately slow.
    let hash = users::hash_password(DEMO_PASSWORD)?;
    let mut tx = db.begin().await?;
    let mut ids = Vec::new();
    for (email, name, role) in DEMO_USERS {
        ids.push(users::insert_hashed(&mut tx.conn(), &ctx, email, name, *role, &hash).await?.id);
    }
    tx.commit().await?;
    let lukas = ids[2];
    let sasha = ids[3];

    let gbp = |amount| Money { amount, currency: "GBP".into() };
    let rates = |hour: i64| {
        vec![
            Rate { duration_minutes: 60, amount: hour, currency: "GBP".into() },
            Rate { duration_minutes: 120, amount: hour * 2 - hour / 5, currency: "GBP".into() },
        ]
    };
    let mut model_ids = Vec::new();
    for (name, loc, langs, hour, slug) in [
        ("Mila", "London W1", vec!["en", "ru"], 25_000, "mila"),
        ("Sofia", "London SW3", vec!["en", "it"], 30_000, "sofia"),
        ("Anna", "Manchester", vec!["en", "de"], 20_000, "anna"),
        ("Elena", "London E1", vec!["en", "es"], 27_500, "elena"),
    ] {
        let m = models::create(
            db,
            &ctx,
            NewModel {
                name: name.into(),
                base_location: Some(loc.into()),
                languages: langs.into_iter().map(String::from).collect(),
                rates: rates(hour),
                attributes: Some(json!({"height_cm": 172})),
                profile_text: Some(format!("{name} is based in {loc}.")),
                seo_slug: Some(slug.into()),
            },
        )
        .await?;
        model_ids.push(m.id);
    }

    // Every day from 10:00 to 04:00 London time: the demo models work late, and the demo
    // flows (and integrations built against them) find them free.
    for id in &model_ids {
        let weekly = DAYS
            .iter()
            .map(|d| WeeklyWindow { day: d.to_string(), start: "10:00".into(), end: "04:00".into() })
            .collect();
        availability::put_rules(
            db,
            &ctx,
            *id,
            Rules { time_zone: "Europe/London".into(), weekly, ..Default::default() },
            None,
        )
        .await?;
    }

    let mut client_ids = Vec::new();
    for (name, phone, email, tg, ch) in [
        ("James Whitfield", "+447700900123", "james@example.com", Some("@jwhitfield"), "telegram"),
        ("Oliver Grant", "+447700900456", "oliver@example.com", None, "sms"),
        ("Henry Clarke", "+447700900789", "henry@example.com", Some("@hclarke"), "email"),
        ("William Hart", "+447700900321", "will@example.com", None, "sms"),
    ] {
        let c = clients::create(
            db,
            &ctx,
            NewClient {
                name: name.into(),
                phone: Some(phone.into()),
                email: Some(email.into()),
                telegram: tg.map(String::from),
                preferred_channel: Some(ch.into()),
                notes: None,
                tags: vec!["demo".into()],
            },
        )
        .await?;
        client_ids.push(c.id);
    }

    // 14:00 London, three days from now: inside the demo models' hours.
    let day = (now() + Duration::days(3)).with_timezone(&chrono_tz::Europe::London).date_naive();
    let start = crate::availability::expand::resolve_local(
        &chrono_tz::Europe::London,
        day.and_hms_opt(14, 0, 0).unwrap_or_default(),
        crate::availability::expand::Edge::Start,
    );
    for (i, source) in ["web", "phone", "telegram"].into_iter().enumerate() {
        inquiries::create(
            db,
            &ctx,
            NewInquiry {
                source: source.into(),
                client_id: Some(client_ids[i]),
                requested_start: Some(start + Duration::hours(i as i64 * 4)),
                duration_minutes: Some(120),
                location: Some("London W1".into()),
                model_id: Some(model_ids[i]),
                budget: Some(gbp(50_000)),
                assignee_id: if i == 0 { Some(lukas) } else { None },
                ..Default::default()
            },
        )
        .await?;
    }

    let b = bookings::create(
        db,
        &ctx,
        NewBooking {
            client_id: client_ids[0],
            model_id: model_ids[0],
            start_at: start + Duration::days(1),
            duration_minutes: 120,
            location: Some("The Langham, London W1".into()),
            price: gbp(45_000),
            deposit: Some(gbp(10_000)),
            status: None,
            assignee_id: Some(lukas),
        },
    )
    .await?;
    bookings::transition(db, &ctx, b.id, BookingTransition { status: "pending".into(), ..Default::default() }).await?;
    bookings::create(
        db,
        &ctx,
        NewBooking {
            client_id: client_ids[3],
            model_id: model_ids[1],
            start_at: start + Duration::days(2),
            duration_minutes: 60,
            location: Some("Claridge's, London W1".into()),
            price: gbp(30_000),
            deposit: Some(gbp(5_000)),
            status: None,
            assignee_id: Some(sasha),
        },
    )
    .await?;

    tasks::create(
        db,
        &ctx,
        NewTask {
            kind: "confirm_booking".into(),
            title: Some("Confirm the Langham booking with the client".into()),
            priority: Some("high".into()),
            subject_type: Some("booking".into()),
            subject_id: Some(b.id),
            assignee_id: Some(lukas),
            due_at: Some(now() + Duration::minutes(30)),
        },
    )
    .await?;
    tasks::create(
        db,
        &ctx,
        NewTask {
            kind: "follow_up".into(),
            title: Some("Call back about the weekend request".into()),
            priority: Some("normal".into()),
            subject_type: Some("client".into()),
            subject_id: Some(client_ids[1]),
            assignee_id: None,
            due_at: Some(now() + Duration::minutes(15)),
        },
    )
    .await?;
    exceptions::create(
        db,
        &ctx,
        NewException {
            kind: "no_show_risk".into(),
            title: Some("Client has not confirmed on the day".into()),
            severity: "medium".into(),
            subject_type: Some("booking".into()),
            subject_id: Some(b.id),
            assignee_id: None,
        },
    )
    .await?;
    Ok(true)
}
