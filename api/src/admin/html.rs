//! Server-rendered HTML for the operator pages: escaping, the shared layout and the plain
//! pages (403, errors). No framework, no external assets.

use poem::Response;
use poem::http::StatusCode;
use virel_domain::rows::User;

/// Escapes text for an HTML element body or a double- or single-quoted attribute value.
/// Everything rendered that did not come from this file (names, error messages, job
/// payloads, query parameters) goes through here.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a value for a query string (everything but unreserved characters).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The shared style sheet of every page (inlined: the pages load no external assets).
const STYLE: &str = include_str!("layout.css");

/// The document around a page's body; `head` goes into `<head>` (a refresh, say).
pub fn document(title: &str, head: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · Virel</title>{head}<style>{STYLE}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

/// Which link of the header is the current page.
#[derive(Clone, Copy, PartialEq)]
pub enum Nav {
    Queues,
    ActionCenter,
    None,
}

/// The signed-in layout: a header with the user, the page links and a Log out button.
pub fn layout(user: &User, nav: Nav, title: &str, head: &str, main: &str) -> String {
    let link = |href: &str, label: &str, me: Nav| {
        let class = if nav == me { " class=\"on\"" } else { "" };
        format!("<a href=\"{href}\"{class}>{label}</a>")
    };
    let body = format!(
        "<header><span class=\"brand\">Virel</span><nav>{}{}</nav>\
         <span class=\"who\">{}<span class=\"role\">{}</span></span>\
         <form method=\"post\" action=\"/admin/logout\"><button type=\"submit\">Log out</button></form></header>\
         <main>{main}</main>",
        link("/admin/queues", "Queues", Nav::Queues),
        link("/admin/action-center", "Action Center", Nav::ActionCenter),
        escape(&user.name),
        escape(&user.role),
    );
    document(title, head, &body)
}

/// An HTML answer for a page without script, and a policy that forbids any: even a rendering
/// mistake could not run injected code. (The Action Center allows its one script by hash.)
pub fn respond(status: StatusCode, html: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header("cache-control", "no-store")
        .header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        )
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "same-origin")
        .body(html)
}

/// The page a signed-in user gets for something their role may not do.
pub fn forbidden(user: &User, what: &str) -> Response {
    let main = format!(
        "<h1>Not allowed</h1><p>Your role ({}) does not include the permission <code>{}</code> this page needs. \
         The attempt was recorded.</p><p><a href=\"/admin/action-center\">Back to the Action Center</a></p>",
        escape(&user.role),
        escape(what)
    );
    respond(StatusCode::FORBIDDEN, layout(user, Nav::None, "Not allowed", "", &main))
}

/// A page for an error that is not the user's fault (or not only theirs).
pub fn error_page(user: &User, status: StatusCode, title: &str, message: &str) -> Response {
    let main = format!("<h1>{}</h1><p>{}</p>", escape(title), escape(message));
    respond(status, layout(user, Nav::None, title, "", &main))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(url_encode("/admin/queues?a=b c&d"), "%2Fadmin%2Fqueues%3Fa%3Db%20c%26d");
        assert_eq!(url_encode("é"), "%C3%A9");
    }
}
