//! Configuration from the environment (documented in the README).

use std::path::PathBuf;

use anyhow::{Context, bail};

#[derive(Clone, Debug)]
pub struct Config {
    /// `postgres://...` or `sqlite:...`; None means the embedded SQLite file in the data dir.
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    /// Prefix of the queues' Redis keys, so deployments can share one Redis.
    pub queue_prefix: String,
    pub bind: String,
    pub data_dir: PathBuf,
    pub jwt_secret: Option<String>,
    pub db_max_connections: u32,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    pub fn from_env() -> anyhow::Result<Config> {
        Ok(Config {
            database_url: var("DATABASE_URL"),
            redis_url: var("REDIS_URL"),
            queue_prefix: var("VIREL_QUEUE_PREFIX").unwrap_or_else(|| "virel".into()),
            bind: var("VIREL_BIND").unwrap_or_else(|| "0.0.0.0:3000".into()),
            data_dir: PathBuf::from(var("VIREL_DATA_DIR").unwrap_or_else(|| "./data".into())),
            jwt_secret: var("JWT_SECRET"),
            db_max_connections: match var("VIREL_DB_MAX_CONNECTIONS") {
                Some(v) => v.parse().context("VIREL_DB_MAX_CONNECTIONS must be a number")?,
                None => 10,
            },
        })
    }

    /// Embedded mode: no DATABASE_URL, so one SQLite file in the data dir holds everything.
    pub fn embedded(&self) -> bool {
        self.database_url.is_none()
    }

    pub fn database_url(&self) -> anyhow::Result<String> {
        match &self.database_url {
            Some(u) => Ok(u.clone()),
            None => {
                std::fs::create_dir_all(&self.data_dir)
                    .with_context(|| format!("cannot create VIREL_DATA_DIR {}", self.data_dir.display()))?;
                Ok(format!("sqlite://{}", self.data_dir.join("virel.db").display()))
            }
        }
    }

    /// The JWT signing secret: JWT_SECRET, or in embedded mode one generated on first start
    /// and kept (mode 0600) in the data dir so tokens survive restarts.
    pub fn jwt_secret(&self) -> anyhow::Result<Vec<u8>> {
        if let Some(s) = &self.jwt_secret {
            if s.len() < 32 {
                bail!("JWT_SECRET must be at least 32 characters");
            }
            return Ok(s.as_bytes().to_vec());
        }
        if !self.embedded() {
            bail!("JWT_SECRET is required when DATABASE_URL is set");
        }
        let path = self.data_dir.join("jwt_secret");
        if let Ok(existing) = std::fs::read_to_string(&path)
            && existing.trim().len() >= 32
        {
            return Ok(existing.trim().as_bytes().to_vec());
        }
        std::fs::create_dir_all(&self.data_dir)?;
        let secret = virel_domain::commands::auth::random_secret();
        write_private(&path, &secret).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(secret.into_bytes())
    }
}

fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(contents.as_bytes())
}
