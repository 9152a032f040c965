//! Outgoing webhooks over HTTP, guarded against server-side request forgery: the host is
//! resolved here, every address it resolves to is checked (`webhooks::refused_ip`), and the
//! request connects to the address that was checked (reqwest's `resolve` override), so DNS
//! cannot answer differently between the check and the connection. No redirects are
//! followed and no proxy is used (a proxy would connect elsewhere than the address checked).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use virel_domain::jobs::BoxFut;
use virel_domain::webhooks::{OutgoingRequest, SendError, WebhookSender, refused_ip};

pub struct HttpWebhooks {
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl Default for HttpWebhooks {
    fn default() -> Self {
        HttpWebhooks { connect_timeout: Duration::from_secs(5), timeout: Duration::from_secs(15) }
    }
}

/// The address to connect to for `url`, once every address the host has passed the check.
pub async fn checked_target(url: &reqwest::Url, allow_private: bool) -> Result<(String, SocketAddr), SendError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SendError::Refused("only http and https URLs are allowed".into()));
    }
    let port = url.port_or_known_default().ok_or_else(|| SendError::Refused("no port".into()))?;
    let check = |ip: IpAddr| match refused_ip(ip, allow_private) {
        Some(why) => Err(SendError::Refused(format!("{ip} is {why}"))),
        None => Ok(()),
    };
    match url.host() {
        None => Err(SendError::Refused("the URL names no host".into())),
        Some(url::Host::Ipv4(a)) => check(IpAddr::V4(a)).map(|_| (a.to_string(), SocketAddr::new(a.into(), port))),
        Some(url::Host::Ipv6(a)) => check(IpAddr::V6(a)).map(|_| (a.to_string(), SocketAddr::new(a.into(), port))),
        Some(url::Host::Domain(host)) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| SendError::Transport(format!("cannot resolve {host}: {e}")))?
                .collect();
            let first = *addrs.first().ok_or_else(|| SendError::Transport(format!("{host} resolves to nothing")))?;
            // Every address must pass: a host that resolves to one public and one private
            // address could otherwise be steered to the private one.
            for a in &addrs {
                check(a.ip()).map_err(|e| match e {
                    SendError::Refused(m) => SendError::Refused(format!("{host} resolves to {m}, not allowed")),
                    other => other,
                })?;
            }
            Ok((host.to_string(), first))
        }
    }
}

fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        e.without_url().to_string()
    }
}

impl WebhookSender for HttpWebhooks {
    fn post(&self, req: OutgoingRequest) -> BoxFut<'_, Result<u16, SendError>> {
        Box::pin(async move {
            let url = reqwest::Url::parse(&req.url).map_err(|e| SendError::Refused(format!("not a URL: {e}")))?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(SendError::Refused("the URL contains credentials".into()));
            }
            let (host, addr) = checked_target(&url, req.allow_private).await?;
            let http = reqwest::Client::builder()
                .connect_timeout(self.connect_timeout)
                .timeout(self.timeout)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .resolve(&host, addr)
                .build()
                .map_err(|e| SendError::Transport(describe(e)))?;
            let mut r = http.post(url);
            for (k, v) in &req.headers {
                r = r.header(k.as_str(), v.as_str());
            }
            let resp = r.body(req.body).send().await.map_err(|e| SendError::Transport(describe(e)))?;
            Ok(resp.status().as_u16())
        })
    }
}
